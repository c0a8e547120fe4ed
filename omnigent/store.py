"""The durable store: one SQLite file (WAL, synchronous=FULL) under the state dir.

Only the ControlActor opens it while a server runs; the CLI opens it directly when no
server is running (e.g. `omnigent token create` before the first start). Every write is
one transaction (`_tx`), so a crash leaves either the old or the new state; inside a
transaction already open (a `group_commit`) it is a savepoint instead, rolled back alone if
it fails.

A store opened `readonly` is a second connection to the same file, for reads beside the
writer: in WAL mode a reader sees the last commit made before its query began and never
waits for the writer (nor the writer for it). A read must run its queries to the end (or
drop its cursors): a statement left half-read keeps its snapshot, and the connection
would go on answering from it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The outcome of one call of a group commit: (its result, None) or (None, what it raised).
Outcome = tuple[Any, BaseException | None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, user TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, machine_id TEXT NOT NULL,
    name TEXT NOT NULL, platform TEXT NOT NULL, registered_at INTEGER NOT NULL,
    last_seen_at INTEGER, info TEXT NOT NULL DEFAULT '{}',
    UNIQUE (owner, machine_id));
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_owner ON sessions (owner, id);
CREATE TABLE IF NOT EXISTS runners (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_session ON files (session_id, id);
CREATE TABLE IF NOT EXISTS terminal_moves (
    session_id TEXT NOT NULL, terminal_id TEXT NOT NULL, runner_id TEXT NOT NULL,
    PRIMARY KEY (session_id, terminal_id));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, path: str, readonly: bool = False) -> None:
        self.path = path
        if not readonly:
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=5000")
        if readonly:
            self._db.execute("PRAGMA query_only=ON")
        else:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @property
    def in_memory(self) -> bool:
        """A private in-memory database: another connection would not see it."""
        return self.path in ("", ":memory:") or self.path.startswith("file::memory:")

    # transactions ---------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[None]:
        """One write: a transaction of its own, or a savepoint in the one already open."""
        db = self._db
        nested = db.in_transaction
        db.execute("SAVEPOINT tx" if nested else "BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if not db.in_transaction:  # some errors make SQLite roll back everything
                pass
            elif nested:
                db.execute("ROLLBACK TO tx")
                db.execute("RELEASE tx")
            else:
                db.execute("ROLLBACK")
            raise
        if nested:
            db.execute("RELEASE tx")
        else:
            _commit(db)

    def group_commit(self, calls: Sequence[Callable[[], Any]]) -> list[Outcome]:
        """Make `calls` (each a function of store calls, e.g. a bound Store method) in
        one transaction with one commit, so one disk flush for them all. Each runs in a
        savepoint of its own: one that raises is rolled back alone and gets its exception;
        the others' results stand once the commit returned (they are then on disk). If
        the transaction fails as a whole (its BEGIN or COMMIT, or an error after which
        SQLite rolled everything back), every call it held gets that error."""
        db = self._db
        out: list[Outcome] = [(None, None)] * len(calls)
        pending: list[int] = []  # done, not yet committed

        def fail_pending(exc: BaseException) -> None:
            for j in pending:
                out[j] = (None, exc)
            pending.clear()

        for i, call in enumerate(calls):
            try:
                if not db.in_transaction:
                    db.execute("BEGIN IMMEDIATE")
                db.execute("SAVEPOINT call")
            except Exception as exc:  # noqa: BLE001 - this call cannot start: it fails
                out[i] = (None, exc)
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to its caller
                out[i] = (None, exc)
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK TO call")
                        db.execute("RELEASE call")
                    else:  # SQLite rolled the whole transaction back
                        fail_pending(exc)
                except Exception as exc2:  # noqa: BLE001
                    _rollback(db)
                    fail_pending(exc2)
                continue
            try:
                db.execute("RELEASE call")
            except Exception as exc:  # noqa: BLE001
                _rollback(db)
                out[i] = (None, exc)
                fail_pending(exc)
                continue
            out[i] = (result, None)
            pending.append(i)
        if db.in_transaction:
            try:
                _commit(db)
            except Exception as exc:  # noqa: BLE001 - every call it held failed
                fail_pending(exc)
        return out

    # users and tokens -----------------------------------------------------------
    def add_token(self, user: str, token: str) -> None:
        now = int(time.time())
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO users VALUES (?, ?)", (user, now))
            self._db.execute("INSERT INTO tokens VALUES (?, ?, ?)", (hash_token(token), user, now))

    def user_for_token(self, token: str) -> str | None:
        row = self._db.execute(
            "SELECT user FROM tokens WHERE hash = ?", (hash_token(token),)
        ).fetchone()
        return row[0] if row else None

    def tokens(self, user: str | None = None) -> list[dict]:
        """The tokens (their hashes, never the secrets), oldest first."""
        sql = "SELECT hash, user, created_at FROM tokens"
        rows = (
            self._db.execute(sql + " WHERE user = ? ORDER BY created_at, hash", (user,))
            if user is not None
            else self._db.execute(sql + " ORDER BY created_at, hash")
        )
        return [{"hash": r[0], "user": r[1], "created_at": r[2]} for r in rows.fetchall()]

    def delete_token(self, token_hash: str) -> bool:
        """Revoke a token; every revocation advances `token_generation` (same transaction),
        so that whoever caches checked tokens (even in another process) can notice."""
        with self._tx():
            gone = self._db.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,)).rowcount
            if gone:
                self._db.execute(
                    "INSERT INTO counters VALUES ('token_generation', 1) ON CONFLICT (name)"
                    " DO UPDATE SET value = value + 1"
                )
        return gone > 0

    def token_generation(self) -> int:
        row = self._db.execute(
            "SELECT value FROM counters WHERE name = 'token_generation'"
        ).fetchone()
        return row[0] if row else 0

    # hosts ----------------------------------------------------------------------
    def all_hosts(self) -> list[dict]:
        rows = self._db.execute(
            "SELECT id, owner, machine_id, name, platform, registered_at, last_seen_at, info"
            " FROM hosts ORDER BY id"
        ).fetchall()
        return [_host_row(r) for r in rows]

    def upsert_host(self, owner: str, machine_id: str, new_id: str, fields: dict) -> dict:
        """The host of (owner, machine_id), created with `new_id` if it is new."""
        now = int(time.time())
        info = json.dumps(fields.get("info", {}))
        with self._tx():
            self._db.execute(
                "INSERT INTO hosts (id, owner, machine_id, name, platform, registered_at,"
                " last_seen_at, info) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (owner, machine_id) DO UPDATE SET name = excluded.name,"
                " platform = excluded.platform, last_seen_at = excluded.last_seen_at,"
                " info = excluded.info",
                (new_id, owner, machine_id, fields["name"], fields["platform"], now, now, info),
            )
        row = self._db.execute(
            "SELECT id, owner, machine_id, name, platform, registered_at, last_seen_at, info"
            " FROM hosts WHERE owner = ? AND machine_id = ?",
            (owner, machine_id),
        ).fetchone()
        return _host_row(row)

    def touch_host(self, host_id: str, when: int) -> None:
        with self._tx():
            self._db.execute("UPDATE hosts SET last_seen_at = ? WHERE id = ?", (when, host_id))

    # sessions -------------------------------------------------------------------
    def put_session(self, session: dict) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)",
                (session["id"], session["owner"], json.dumps(session)),
            )

    def get_session(self, session_id: str) -> dict | None:
        row = self._db.execute("SELECT data FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def sessions_of(self, owner: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT data FROM sessions WHERE owner = ? ORDER BY id", (owner,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def session_page(
        self,
        owner: str,
        limit: int,
        after: str | None = None,
        before: str | None = None,
        descending: bool = False,
    ) -> tuple[list[dict], bool]:
        """One page of an owner's sessions by id, and whether there are more beyond it:
        the semantics of omnigent.domain.pagination.paginate_by_key, as one keyset query
        on the (owner, id) index (a page costs the same with 10 sessions or 10,000)."""
        where, args = ["owner = ?"], [owner]
        first, then = ("<", ">") if descending else (">", "<")  # after, before
        if after is not None:
            where.append(f"id {first} ?")
            args.append(after)
        if before is not None:
            where.append(f"id {then} ?")
            args.append(before)
        # `before` walks back from the cursor: nearest first, then turned round
        backwards = before is not None
        direction = "DESC" if descending != backwards else "ASC"
        rows = self._db.execute(
            f"SELECT data FROM sessions WHERE {' AND '.join(where)} "
            f"ORDER BY id {direction} LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        page = [json.loads(r[0]) for r in rows[:limit]]
        if backwards:
            page.reverse()
        return page, len(rows) > limit

    def active_sessions(self) -> list[dict]:
        rows = self._db.execute("SELECT data FROM sessions").fetchall()
        out = [json.loads(r[0]) for r in rows]
        return [s for s in out if s["status"] in ("launching", "running")]

    def delete_session(self, session_id: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def _update_session(self, session_id: str, change) -> dict | None:
        """Read, `change(session)` (returns False to leave it), write: one transaction."""
        with self._tx():
            row = self._db.execute(
                "SELECT data FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            session = json.loads(row[0])
            if change(session) is False:
                return None
            self._db.execute(
                "UPDATE sessions SET data = ? WHERE id = ?", (json.dumps(session), session_id)
            )
            return session

    def bind_runner(self, session_id: str, runner_id: str, fields: dict[str, Any]) -> dict | None:
        """Compare-and-set: bind `runner_id` unless a live runner is already bound.

        Returns the updated session, or None when the CAS lost.
        """

        def bind(session: dict) -> bool:
            if session["runner_id"] and session["status"] in ("launching", "running"):
                return False
            session.update(fields, runner_id=runner_id, status="launching")
            return True

        return self._update_session(session_id, bind)

    def update_session_if_runner(
        self, session_id: str, runner_id: str, fields: dict
    ) -> dict | None:
        """Update a session only while `runner_id` is still its runner."""

        def update(session: dict) -> bool:
            if session["runner_id"] != runner_id:
                return False
            session.update(fields)
            return True

        return self._update_session(session_id, update)

    # runners --------------------------------------------------------------------
    def put_runner(self, runner: dict) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO runners VALUES (?, ?, ?)",
                (runner["runner_id"], runner["session_id"], json.dumps(runner)),
            )

    def get_runner(self, runner_id: str) -> dict | None:
        row = self._db.execute("SELECT data FROM runners WHERE id = ?", (runner_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def live_runners(self) -> list[dict]:
        rows = self._db.execute("SELECT data FROM runners").fetchall()
        out = [json.loads(r[0]) for r in rows]
        return [r for r in out if r["status"] in ("launching", "running")]

    # files ----------------------------------------------------------------------
    def put_file(self, meta: dict) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO files VALUES (?, ?, ?)",
                (meta["id"], meta["session_id"], json.dumps(meta)),
            )

    def get_file(self, file_id: str) -> dict | None:
        row = self._db.execute("SELECT data FROM files WHERE id = ?", (file_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def files_of(self, session_id: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT data FROM files WHERE session_id = ? ORDER BY id", (session_id,)
        ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def delete_file(self, file_id: str) -> bool:
        with self._tx():
            return self._db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0

    def delete_files_of(self, session_id: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM files WHERE session_id = ?", (session_id,))

    # terminals handed to a session from another session's runner ------------------------
    def moves_of(self, session_id: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT terminal_id, runner_id FROM terminal_moves WHERE session_id = ?", (session_id,)
        ).fetchall()
        return dict(rows)

    def move_terminal(
        self, source: str, target: str, terminal_id: str, runner_id: str | None
    ) -> None:
        """The terminal leaves `source`; `target` finds it on `runner_id` (None: on the
        target's own runner, nothing to remember)."""
        with self._tx():
            self._db.execute(
                "DELETE FROM terminal_moves WHERE session_id = ? AND terminal_id = ?",
                (source, terminal_id),
            )
            if runner_id is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO terminal_moves VALUES (?, ?, ?)",
                    (target, terminal_id, runner_id),
                )

    def forget_move(self, session_id: str, terminal_id: str) -> None:
        with self._tx():
            self._db.execute(
                "DELETE FROM terminal_moves WHERE session_id = ? AND terminal_id = ?",
                (session_id, terminal_id),
            )


def _commit(db: sqlite3.Connection) -> None:
    try:
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _host_row(r: tuple) -> dict:
    return {
        "id": r[0],
        "owner": r[1],
        "machine_id": r[2],
        "name": r[3],
        "platform": r[4],
        "registered_at": r[5],
        "last_seen_at": r[6],
        "info": json.loads(r[7]),
    }
