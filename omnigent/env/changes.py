"""What changed in a workspace since the session started, whoever changed it.

At start the tracker takes a *baseline*: every file's size, mtime and inode, and (within
caps) its bytes, appended to one pack file in the runner's state directory with a digest
per file. Then an inotify watcher (watchdog's `InotifyFD`) marks every path it hears of
as *dirty*. Listing changes compares only the dirty paths with the baseline: a quick stat
check first, the digest when the stat differs, so a file written back to its first bytes
and a file created then deleted are not listed.

The watcher cannot see everything, so three things back it up:
- a *barrier*: before answering, the tracker touches a file in a private directory watched
  by the same inotify instance and waits for that event; inotify keeps one queue in order,
  so every change made before the request (by a shell command that just returned, say)
  has been heard by then;
- a new directory is walked as soon as it is heard of (after its watch is set), which
  catches `mkdir -p a/b/c && touch a/b/c/f` made faster than watches can be added;
- a *reconcile* pass, a stat-only walk of the whole tree, runs when events were lost
  (queue overflow, no watch could be added) and every `reconcile_s` in the background
  (writes through mmap make no events at all).

The baseline can be kept beside the session rather than the runner (`baseline_dir`, see
omnigent.env.baseline): a new tracker for the same session and root then takes it up
(`start`), reconciles the tree against it (so what changed while no runner ran is
dirty), and reads no bytes again unless the stored baseline was left incomplete.

Bounded cost (documented in README): directories named in `IGNORED_DIRS` and Python
virtual environments are neither watched nor tracked; the bytes of a file over
`file_cap` or beyond a total of `pack_cap` are not kept, and such a file is compared by
stat alone and diffs with `before: null`.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
from bisect import bisect_left
from typing import IO

from omnigent.env.baseline import BaselineStore, Stored
from omnigent.env.fsops import READ_CAP, decode_text
from omnigent.env.paths import clean, resolve
from omnigent.env.tree import (
    ENTRY,
    FILE_CAP,
    IGNORED_DIRS,
    MAX_FILES,
    PACK_CAP,
    Base,
    b64_or_none,
    digest_of,
    read_tracked,
    stat_key,
    walk_files,
)
from omnigent.env.watcher import (
    BARRIER_MASK,
    CALLBACK_ID,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    WATCH_MASK,
    WatchDescriptor,
    Watcher,
)
from omnigent.errors import NotChanged

log = logging.getLogger(__name__)

# The stat of a file changed before the baseline kept its bytes: no file has it.
CHANGED_KEY = (-1, -1, -1)


class ChangeTracker:
    def __init__(
        self,
        root: str,
        state_dir: str,
        *,
        file_cap: int = FILE_CAP,
        pack_cap: int = PACK_CAP,
        reconcile_s: float = 30.0,
        max_files: int = MAX_FILES,
        baseline_dir: str | None = None,
    ) -> None:
        """`state_dir`: the runner's own (the barrier's directory; removed by `close`).
        `baseline_dir`: where the session's baseline is kept and found again (kept by
        `close`); without it the baseline is in `state_dir` and goes with the tracker."""
        self.root = root
        self.state_dir = state_dir
        self._store = BaselineStore(baseline_dir) if baseline_dir else None
        self._persist = False  # the baseline being taken is written to the store
        self._save_stats_first = True  # a new baseline: its stats are saved before its bytes
        self.reused = ""  # "", "complete" or "incomplete": what `start` took up
        self.file_cap = file_cap
        self.pack_cap = pack_cap
        self.reconcile_s = reconcile_s
        self.max_files = max_files
        self.partial = False
        self._started_ns = 0
        self._lock = threading.RLock()
        self._base: dict[str, Base] = {}
        self._base_sorted: list[str] = []
        self._dirty: dict[str, int] = {}  # rel -> number of the event that marked it
        self._events = 0
        self._verdicts: dict[str, tuple[tuple[int, int, int], bool]] = {}  # rel -> (key, same)
        self._lost_events = False
        self._ignored: set[str] = set()  # directories found to be virtual environments
        self._cache: tuple[int, dict] | None = None  # (events seen, last answer)
        self._wd_dir: dict[int, str] = {}
        self._dir_wd: dict[str, WatchDescriptor] = {}
        self._barrier_wd = -1
        self._barrier_seq = 0
        self._barrier_seen = 0
        self._barrier_cv = threading.Condition()
        self._stop = threading.Event()
        self._baseline_done = threading.Event()
        self._events_at_walk = 0
        self._fd: Watcher | None = None
        os.makedirs(os.path.join(state_dir, "barrier"), exist_ok=True)
        self._pack: IO[bytes] | None = None  # held open for the tracker's life (`start`)

    # start / stop -------------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        """Watch first, then take the baseline, so no change can fall in between.

        The baseline is taken in two steps: a stat-only walk that adds every watch and
        records every file's (size, mtime, inode), then a pass that keeps the files' bytes.
        With `wait=False` only the walk is done here and the bytes are read in a thread
        (a launch is acknowledged without waiting for them): a file changed before its
        bytes were read (its stat differs from the walk's, or the watcher heard of it) keeps
        no bytes and is listed as modified (its diff has no `before`). `changes` and
        `diff` wait for that pass; so do writes through the runner (`wait_baseline`), which
        therefore can never be mistaken for the workspace as it was.

        With a `baseline_dir` that holds a baseline of this root, that one is taken up
        instead: the walk is a reconcile against it (every path that differs is dirty, so
        changes made while no tracker ran are listed), and no bytes are read. A stored
        baseline left incomplete (its tracker stopped before all bytes were kept) gives
        the stats; the bytes of the files whose stat is still the stored one are read
        again (in the background, as above), the others are compared by stat alone (their
        diff has no `before`)."""
        self._start_watcher()
        stored = self._take_up()
        if stored is not None:
            self._resume(stored, wait)
            return
        base: dict[str, Base] = {}
        walked: list[tuple[str, os.stat_result]] = []
        # file times come from a coarse clock that may lag this one by a tick
        self._started_ns = time.time_ns() - 20_000_000
        with self._lock:
            self._events_at_walk = self._events
        for rel, st in walk_files(self.root, on_dir=self._watch_dir):
            if len(base) >= self.max_files:
                self.partial = True  # see _status: older files count as unchanged
                break
            base[rel] = Base(stat_key(st), None, -1, 0)
            walked.append((rel, st))
        with self._lock:
            self._base = base
            self._base_sorted = sorted(base)
        self._open_pack()
        self._bytes_pass(walked, wait, fresh=True)

    def _take_up(self) -> Stored | None:
        """The stored baseline of this root, if there is one to take up. A store that
        cannot be used (held by another live tracker, not writable) is left alone: this
        tracker keeps its baseline in its own state directory."""
        store = self._store
        if store is None:
            return None
        try:
            if not store.acquire():
                log.warning("baseline %s is held by another runner", store.path)
                self._store = None
                return None
            stored = store.load(self.root)
        except OSError as exc:
            log.warning("the session's baseline cannot be kept (%s)", exc)
            self._drop_store()
            return None
        self._persist = True
        return stored

    def _resume(self, stored: Stored, wait: bool) -> None:
        self._started_ns = stored.started_ns
        self.partial = stored.partial
        self.reused = "complete" if stored.complete else "incomplete"
        with self._lock:
            self._events_at_walk = self._events
            self._base = stored.base
            self._base_sorted = sorted(stored.base)
        # the walk: a watch on every directory, and whatever differs is dirty
        unchanged = self._reconcile_walk(collect=not stored.complete)
        if stored.complete:
            assert self._store is not None
            self._pack = self._store.open_pack(write=False)
            self._baseline_done.set()
            threading.Thread(target=self._reconcile_loop, name="env-reconcile", daemon=True).start()
            return
        self._open_pack()
        self._bytes_pass(unchanged, wait, fresh=False)

    def _open_pack(self) -> None:
        if self._store is not None:
            try:
                self._pack = self._store.open_pack(write=True)
                return
            except OSError as exc:
                log.warning("the session's baseline cannot be kept (%s)", exc)
                self._drop_store()
        # held open for the tracker's life (close() closes it), not a with-block's
        self._pack = open(os.path.join(self.state_dir, "baseline.pack"), "w+b")  # noqa: SIM115

    def _drop_store(self) -> None:
        self._persist = False
        if self._store is not None:
            self._store.release()
            self._store = None

    def _bytes_pass(self, walked: list[tuple[str, os.stat_result]], wait: bool, fresh: bool):
        self._save_stats_first = fresh
        if wait:
            self._keep_bytes(walked)
        else:
            threading.Thread(
                target=self._keep_bytes, args=(walked,), name="env-baseline", daemon=True
            ).start()

    def _save(self, complete: bool) -> None:
        """Write the baseline to the store (stats only, or complete with its pack)."""
        if not self._persist or self._store is None:
            return
        with self._lock:
            base = dict(self._base)
        try:
            self._store.write(
                self.root,
                base,
                complete=complete,
                partial=self.partial,
                started_ns=self._started_ns,
                pack=self._pack,
            )
        except OSError as exc:  # the tracker goes on; the next runner takes a new one
            log.warning("the session's baseline could not be saved (%s)", exc)
            self._persist = False

    def _keep_bytes(self, walked: list[tuple[str, os.stat_result]]) -> None:
        """The baseline's bytes (within caps), appended to the pack. They are read after
        the walk, so a file changed since must be left without bytes (see `start`).
        A baseline kept in a store is saved there first with its stats only (a taken-up
        incomplete one has them there already), then once complete (before `changes` may
        answer: `close` waits for this pass, never for a half-written save)."""
        try:
            if self._save_stats_first:
                self._save(complete=False)
            kept = offset = 0
            batch: list[tuple[str, os.stat_result, bytes]] = []
            for rel, st in walked:
                if self._stop.is_set():
                    return
                if kept + st.st_size > self.pack_cap:
                    continue
                data = read_tracked(os.path.join(self.root, rel), st, self.file_cap)
                if data is None:
                    continue
                kept += len(data)
                batch.append((rel, st, data))
                if len(batch) >= 512:
                    offset = self._add_to_pack(batch, offset)
                    batch = []
            if batch:
                self._add_to_pack(batch, offset)
            assert self._pack is not None
            self._pack.flush()
            if not self._stop.is_set():
                self._save(complete=True)
        except Exception:  # the tracker falls back to stat-only comparison
            log.exception("baseline bytes could not be kept")
        finally:
            self._baseline_done.set()
        if not self._stop.is_set():
            threading.Thread(target=self._reconcile_loop, name="env-reconcile", daemon=True).start()

    def _add_to_pack(self, batch: list[tuple[str, os.stat_result, bytes]], offset: int) -> int:
        self._sync()  # every change made before these reads has been heard of now
        kept: dict[str, Base] = {}
        with self._lock:
            dirty = {rel for rel, _, _ in batch if self._dirty.get(rel, 0) > self._events_at_walk}
        for rel, st, data in batch:
            if rel in dirty or not _same_file(os.path.join(self.root, rel), st):
                # changed since the walk (during the launch, or just after): its first
                # bytes are unknown, and it is listed as modified from now on, even if
                # the change left its stat as it was (same size, same clock tick)
                kept[rel] = Base(CHANGED_KEY, None, -1, 0)
                continue
            assert self._pack is not None
            self._pack.write(data)
            kept[rel] = Base(stat_key(st), digest_of(data), offset, len(data))
            offset += len(data)
        with self._lock:
            self._base.update(kept)
        return offset

    def baseline_ready(self) -> bool:
        return self._baseline_done.is_set()

    def wait_baseline(self, timeout: float | None = None) -> bool:
        return self._baseline_done.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._baseline_done.wait(5)  # the bytes pass stops at its next file
        if self._fd is not None:
            self._fd.stop()  # ends the reader thread, then closes the inotify instance
            self._fd.join(2)
        if self._pack is not None:
            self._pack.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if self._store is not None:  # the stored baseline stays, for the next runner
            self._store.release()

    # watcher ------------------------------------------------------------------------
    def _start_watcher(self) -> None:
        try:
            self._fd = Watcher()
            self._fd.start()
            self._barrier_wd = self._fd.add_callback(
                os.fsencode(os.path.join(self.state_dir, "barrier")),
                BARRIER_MASK,
                self,
                CALLBACK_ID,
            )
        except OSError as exc:  # no inotify instance left: reconcile instead
            log.warning("no filesystem watcher (%s); changes are found by reconcile", exc)
            self._fd = None
            self._lost_events = True

    def _watch_dir(self, rel: str) -> None:
        if self._fd is None:
            return
        if rel in self._dir_wd:
            return
        path = os.path.join(self.root, rel) if rel else self.root
        try:
            wd = self._fd.add_callback(os.fsencode(path), WATCH_MASK, self, CALLBACK_ID)
        except OSError as exc:
            if not self._lost_events:
                log.warning("cannot watch %s (%s); changes there are found by reconcile", path, exc)
            self._lost_events = True
            return
        with self._lock:
            old = self._wd_dir.get(wd)
            if old is not None and old != rel:
                self._dir_wd.pop(old, None)
            self._wd_dir[wd] = rel
            self._dir_wd[rel] = wd

    # WatchCallback, called on the watcher's thread
    def on_event(self, event) -> None:
        if event.wd == self._barrier_wd:
            if event.mask & IN_CREATE:
                with self._barrier_cv:
                    self._barrier_seen = max(self._barrier_seen, int(event.name or 0))
                    self._barrier_cv.notify_all()
            return
        with self._lock:
            parent = self._wd_dir.get(event.wd)
        if parent is None or not event.name:
            return
        name = os.fsdecode(event.name)
        rel = f"{parent}/{name}" if parent else name
        if event.mask & IN_ISDIR:
            if name in IGNORED_DIRS:
                return
            if event.mask & (IN_CREATE | IN_MOVED_TO):
                self._adopt_dir(rel)  # watch it and everything in it, then list it
            elif event.mask & (IN_MOVED_FROM | IN_DELETE):
                self._forget_dir(rel)
            return
        if name == "pyvenv.cfg" and event.mask & (IN_CREATE | IN_MOVED_TO) and parent:
            self._ignore_dir(parent)  # a virtual environment is being made there
            return
        self._mark((rel,))

    def _ignore_dir(self, rel: str) -> None:
        """Stop tracking a directory found to be an ignored kind after it was adopted."""
        with self._lock:
            self._ignored.add(rel)
        self._forget_dir(rel, mark=False)
        prefix = rel + "/"
        with self._lock:
            for path in [p for p in self._dirty if p.startswith(prefix)]:
                if path not in self._base:
                    del self._dirty[path]

    def tracked(self, rel: str) -> bool:
        """Whether changes to `rel` are tracked at all (not under an ignored directory)."""
        parts = rel.split("/")[:-1]
        if any(part in IGNORED_DIRS for part in parts):
            return False
        return not any(rel.startswith(d + "/") for d in self._ignored)

    def _mark(self, rels) -> None:
        with self._lock:
            for rel in rels:
                self._events += 1
                self._dirty[rel] = self._events

    def on_watch_deleted(self, wd: int) -> None:
        with self._lock:
            rel = self._wd_dir.pop(wd, None)
            if rel is not None and self._dir_wd.get(rel) == wd:
                del self._dir_wd[rel]

    def on_queue_overflow(self) -> None:
        self._lost_events = True

    def _adopt_dir(self, rel: str) -> None:
        path = os.path.join(self.root, rel)
        if os.path.exists(os.path.join(path, "pyvenv.cfg")):
            return
        self._watch_dir_tree(rel)

    def _watch_dir_tree(self, rel: str) -> None:
        found = []

        def on_dir(sub: str) -> None:
            self._watch_dir(f"{rel}/{sub}" if sub else rel)

        for child, _ in walk_files(os.path.join(self.root, rel), on_dir=on_dir):
            found.append(f"{rel}/{child}")
        self._mark(found)

    def _forget_dir(self, rel: str, mark: bool = True) -> None:
        """A directory left (moved away or removed): all it held is dirty; its watches go."""
        prefix = rel + "/"
        with self._lock:
            if mark:
                i = bisect_left(self._base_sorted, prefix)
                j = i
                while j < len(self._base_sorted) and self._base_sorted[j].startswith(prefix):
                    j += 1
                self._mark(self._base_sorted[i:j])
            gone = [(wd, d) for d, wd in self._dir_wd.items() if d == rel or d.startswith(prefix)]
            for wd, d in gone:
                del self._dir_wd[d]
                self._wd_dir.pop(wd, None)
        if self._fd is not None and gone:
            try:
                self._fd.remove_callbacks([(wd, CALLBACK_ID) for wd, _ in gone])
            except OSError:
                pass

    def _sync(self, timeout: float = 2.0) -> None:
        """Wait until the watcher has handled every event queued before now."""
        if self._fd is None or self._fd.idle():
            return
        with self._barrier_cv:
            self._barrier_seq += 1
            seq = self._barrier_seq
        path = os.path.join(self.state_dir, "barrier", str(seq))
        try:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            os.unlink(path)
        except OSError:
            self._lost_events = True
            return
        with self._barrier_cv:
            if not self._barrier_cv.wait_for(lambda: self._barrier_seen >= seq, timeout):
                self._lost_events = True

    # reconcile ----------------------------------------------------------------------
    def reconcile(self) -> None:
        """Stat-only walk of the whole tree: whatever differs from the baseline is dirty,
        and any directory without a watch gets one."""
        self._reconcile_walk()

    def _reconcile_walk(self, collect: bool = False) -> list[tuple[str, os.stat_result]]:
        """`reconcile`; with `collect`, returns the files whose stat is the baseline's."""
        self._lost_events = self._fd is None
        seen: set[str] = set()
        suspects: list[str] = []
        same: list[tuple[str, os.stat_result]] = []
        with self._lock:
            base = self._base
        # _watch_dir skips directories already watched (and does nothing without inotify)
        for rel, st in walk_files(self.root, on_dir=self._watch_dir):
            seen.add(rel)
            b = base.get(rel)
            if b is None or b.key != stat_key(st):
                suspects.append(rel)
            elif collect:
                same.append((rel, st))
        self._mark(suspects)
        self._mark([rel for rel in base if rel not in seen])
        return same

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self.reconcile_s):
            try:
                self.reconcile()
            except Exception:  # a background pass logs and goes on
                log.exception("reconcile failed")

    # answers ------------------------------------------------------------------------
    def _settle(self) -> None:
        self._baseline_done.wait()
        self._sync()
        if self._lost_events:
            self.reconcile()

    def _status(self, rel: str) -> tuple[str | None, os.stat_result | None]:
        """("created" | "modified" | "deleted" | None, current lstat) of a dirty path."""
        path = os.path.join(self.root, rel)
        base = self._base.get(rel)
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            st = None  # a file that became a directory is a deleted file
        if st is None:
            return ("deleted" if base is not None else None), None
        if base is None:
            if self.partial and st.st_ctime_ns < self._started_ns:
                return None, st  # beyond a partial baseline, and older than the session
            return "created", st
        key = stat_key(st)
        if key == base.key:
            return None, st
        if base.digest is None or key[0] != base.key[0]:
            return "modified", st
        cached = self._verdicts.get(rel)
        if cached is not None and cached[0] == key:
            return (None if cached[1] else "modified"), st
        data = read_tracked(path, st, self.file_cap)
        same = data is not None and digest_of(data) == base.digest
        self._verdicts[rel] = (key, same)
        return (None if same else "modified"), st

    def quick(self) -> bool:
        """Whether `changes()` is sure to take well under a millisecond."""
        if not self._baseline_done.is_set() or self._lost_events:
            return False
        if self._fd is not None and not self._fd.idle():
            return False
        cache = self._cache
        return len(self._dirty) < 64 or (cache is not None and cache[0] == self._events)

    def changes(self) -> dict:
        """The answer, computed again only when an event came since the last one: every
        change to a tracked file makes an event (or is marked dirty by a reconcile)."""
        self._settle()
        with self._lock:
            events = self._events
            cache = self._cache
            if cache is not None and cache[0] == events:
                return cache[1]
            dirty = sorted(self._dirty.items())
        data = []
        settled = []
        for rel, seq in dirty:
            if not self.tracked(rel):
                settled.append((rel, seq))
                continue
            status, st = self._status(rel)
            if status is None:
                settled.append((rel, seq))  # as it was at start: no longer dirty
                continue
            data.append(
                {
                    "object": ENTRY,
                    "path": rel,
                    "name": rel.rsplit("/", 1)[-1],
                    "status": status,
                    "bytes": st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None,
                    "modified_at": int(st.st_mtime) if st is not None else None,
                }
            )
        if settled:
            with self._lock:  # unless an event marked it again meanwhile
                for rel, seq in settled:
                    if self._dirty.get(rel) == seq:
                        del self._dirty[rel]
        answer = {"object": "list", "data": data, "has_more": False}
        with self._lock:
            self._cache = (events, answer)
        return answer

    def diff(self, rel: str | None) -> dict:
        norm = clean(rel)
        if not norm:
            raise NotChanged("the environment root is not a file")
        resolve(self.root, norm)  # containment: raises InvalidPath
        self._settle()
        with self._lock:
            known = norm in self._base or norm in self._dirty
        status, st = self._status(norm) if known and self.tracked(norm) else (None, None)
        if status is None:
            raise NotChanged(f"not changed in this session: {norm}")
        base = self._base.get(norm)
        before = after = None
        truncated = False
        if base is not None:
            if base.offset >= 0 and self._pack is not None:
                before = os.pread(self._pack.fileno(), base.length, base.offset)
            else:
                truncated = True
        if st is not None:
            after = read_tracked(os.path.join(self.root, norm), st, READ_CAP, cut=True)
            truncated = truncated or st.st_size > READ_CAP
        body = {
            "object": "session.environment.filesystem.file_diff",
            "path": norm,
            "status": status,
            "truncated": truncated,
        }
        texts = [
            None if before is None else decode_text(before),
            None if after is None else decode_text(after, cut=truncated),
        ]
        if all(t is not None or b is None for t, b in zip(texts, (before, after), strict=True)):
            body.update(encoding="utf-8", before=texts[0], after=texts[1])
        else:
            body.update(encoding="base64", before=b64_or_none(before), after=b64_or_none(after))
        return body


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        return stat_key(os.lstat(path)) == stat_key(st)
    except OSError:
        return False
