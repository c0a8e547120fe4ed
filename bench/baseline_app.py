"""The floor for bench_hosts.py: plain uvicorn + FastAPI doing the same work in-process.

    python bench/baseline_app.py PORT TOKEN HOSTS_JSON

- `GET /v1/hosts`: checks the bearer token (dict lookup, as our server's token cache
  does), filters the host rows by owner, sorts them and returns `{"hosts": [...]}` in the
  same shape as our server's answer (the rows are given on the command line).
- `GET /v1/hosts/{id}/filesystem/{path}`: `os.listdir` + `os.stat` per entry on every
  request (no caching), sorted by path, paginated by `limit`, in the list envelope our
  server returns (`object`, `data[name, path, type, bytes, modified_at]`, `first_id`,
  `last_id`, `has_more`).
"""

from __future__ import annotations

import json
import os
import stat
import sys

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request

PORT, TOKEN, HOSTS = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
USERS = {TOKEN: HOSTS[0]["owner"] if HOSTS else "local"}
app = FastAPI()


def user_of(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    user = USERS.get(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise HTTPException(401, "invalid bearer token")
    return user


@app.get("/healthz")
async def healthz() -> dict:
    return {"ok": True}


@app.get("/v1/hosts")
async def list_hosts(request: Request) -> dict:
    user = user_of(request)
    hosts = [dict(h) for h in HOSTS if h["owner"] == user]
    hosts.sort(key=lambda h: h["id"])
    return {"hosts": hosts}


def _entry(directory: str, name: str) -> dict:
    path = os.path.join(directory, name)
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        kind, size = "directory", None
    elif stat.S_ISREG(st.st_mode):
        kind, size = "file", st.st_size
    else:
        kind, size = "other", None
    return {
        "name": name,
        "path": path,
        "type": kind,
        "bytes": size,
        "modified_at": int(st.st_mtime),
    }


@app.get("/v1/hosts/{host_id}/filesystem/{path:path}")
async def browse(
    host_id: str, path: str, request: Request, limit: int = Query(20, ge=1, le=1000)
) -> dict:
    user_of(request)
    directory = "/" + path.lstrip("/")
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise HTTPException(404, "no such directory") from None
    entries = sorted((_entry(directory, n) for n in names), key=lambda e: e["path"])
    page = entries[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["path"] if page else None,
        "last_id": page[-1]["path"] if page else None,
        "has_more": len(entries) > limit,
    }


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
