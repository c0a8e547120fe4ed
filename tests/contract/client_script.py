"""Run by tests/contract/test_omnigent_client.py inside a Python >= 3.12 venv holding
`omnigent==0.19.0` (so not importable from our suite): drives `omnigent_client` against
our server and prints one JSON line per step, `{"step", "ok", "value" | "error"}`. It
asserts nothing: the test judges what it saw.

Input only from the environment: OMNI_URL, OMNI_TOKEN, OMNI_SESSION_ID (bound to a
runner), OMNI_IDLE_SESSION_ID (no runner), OMNI_WORKDIR (a scratch directory).
"""

import asyncio
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import traceback

from omnigent_client import OmnigentClient
from omnigent_client._errors import OmnigentError

URL = os.environ["OMNI_URL"]
TOKEN = os.environ["OMNI_TOKEN"]
SID = os.environ["OMNI_SESSION_ID"]
IDLE = os.environ["OMNI_IDLE_SESSION_ID"]
WORK = pathlib.Path(os.environ["OMNI_WORKDIR"])

TEXT = "héllo, omnigent\n".encode() * 10
BLOB = bytes(range(256)) * 64 + b"\r\n\x00end"


def plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, pathlib.Path):
        return str(value)
    return value


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def step(name, fn):
    entry = {"step": name}
    try:
        entry.update(ok=True, value=plain(await fn()))
    except OmnigentError as e:
        entry.update(
            ok=False,
            error={
                "type": type(e).__name__,
                "message": str(e)[:800],
                "status_code": e.status_code,
                "code": e.code,
            },
        )
    except Exception as e:  # noqa: BLE001 - anything else the client raised (KeyError, …)
        entry.update(
            ok=False,
            error={
                "type": type(e).__name__,
                "message": repr(e)[:800],
                "status_code": None,
                "code": None,
                "traceback": traceback.format_exc()[-1500:],
            },
        )
    print(json.dumps(entry), flush=True)
    return entry


async def main() -> None:
    (WORK / "notes.txt").write_bytes(TEXT)
    (WORK / "blob.bin").write_bytes(BLOB)
    print(
        json.dumps(
            {
                "step": "inputs",
                "ok": True,
                "value": {
                    "notes.txt": {"bytes": len(TEXT), "sha256": sha(TEXT)},
                    "blob.bin": {"bytes": len(BLOB), "sha256": sha(BLOB)},
                },
            }
        ),
        flush=True,
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with OmnigentClient(base_url=URL, headers=headers) as client:
        files = client.files.for_session(SID)
        ids = {}
        for name in ("notes.txt", "blob.bin"):
            got = await step(f"files.upload {name}", lambda n=name: files.upload(str(WORK / n)))
            if got["ok"]:
                ids[name] = got["value"]["id"]
        print(json.dumps({"step": "ids", "ok": True, "value": ids}), flush=True)
        blob = ids.get("blob.bin", "file_missing")
        notes = ids.get("notes.txt", "file_missing")
        await step("files.list", lambda: files.list())
        await step("files.list asc", lambda: files.list(order="asc"))
        await step("files.list limit 1", lambda: files.list(limit=1))
        await step("files.list after", lambda: files.list(limit=1, after=blob))
        await step("files.get", lambda: files.get(blob))

        async def content():
            data = await files.get_content(blob)
            return {"bytes": len(data), "sha256": sha(data)}

        await step("files.get_content", content)

        async def download():
            target = WORK / "out" / "sub" / "blob.bin"
            path = await files.download(blob, target)
            data = pathlib.Path(path).read_bytes()
            return {
                "path": str(path),
                "target": str(target),
                "bytes": len(data),
                "sha256": sha(data),
            }

        await step("files.download", download)
        await step("files.delete", lambda: files.delete(notes))
        await step("files.get deleted", lambda: files.get(notes))
        await step("files.get_content deleted", lambda: files.get_content(notes))
        await step("files.delete deleted", lambda: files.delete(notes))
        await step("files.list after delete", lambda: files.list())
        await step("files.get unknown", lambda: files.get("file_doesnotexist"))
        await step(
            "files.list unknown session",
            lambda: client.files.for_session("conv_doesnotexist").list(),
        )
        await step("files.get other session", lambda: client.files.for_session(IDLE).get(blob))

        await step("sessions.get", lambda: client.sessions.get(SID))
        await step("sessions.get idle", lambda: client.sessions.get(IDLE))
        await step("sessions.list", lambda: client.sessions.list())
        await step("sessions.list asc", lambda: client.sessions.list(order="asc"))
        await step("sessions.list limit 1", lambda: client.sessions.list(limit=1))
        await step("sessions.list after", lambda: client.sessions.list(limit=1, after=SID))
        await step("sessions.list before", lambda: client.sessions.list(limit=1, before=IDLE))
        await step(
            "sessions.list sort_by updated_at", lambda: client.sessions.list(sort_by="updated_at")
        )
        await step("sessions.list limit 0", lambda: client.sessions.list(limit=0))
        await step("sessions.get unknown", lambda: client.sessions.get("conv_doesnotexist"))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
