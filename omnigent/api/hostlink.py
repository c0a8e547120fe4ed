"""The API's side of a host's direct data path (see actors/dataserver.py): one shared
keep-alive HTTP client; connection failures read as "host offline", a missed deadline as
504, and a host's OmnigentError is raised again as the same class."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from omnigent import errors
from omnigent.errors import OmnigentError, UpstreamTimeout
from omnigent.wire import HOST_ERROR_STATUS, KEY_HEADER


class HostUnreachable(Exception):
    """The link is broken (dead host, restarted actor): drop it and look again."""


@dataclass(frozen=True)
class HostLink:
    url: str
    key: str

    async def list_directory(
        self, session: aiohttp.ClientSession, timeout: float, **query
    ) -> bytes:
        params = {k: str(v) for k, v in query.items() if v is not None}
        try:
            async with asyncio.timeout(timeout):
                async with session.get(
                    f"{self.url}/fs", params=params, headers={KEY_HEADER: self.key}
                ) as resp:
                    body = await resp.read()
                    status = resp.status
        except TimeoutError:
            raise UpstreamTimeout("the host did not answer in time") from None
        except aiohttp.ClientError:
            raise HostUnreachable() from None
        if status == 200:
            return body
        if status == HOST_ERROR_STATUS:
            raise _host_error(body)
        raise HostUnreachable()


def _host_error(body: bytes) -> OmnigentError:
    import json

    data = json.loads(body)
    cls = getattr(errors, data.get("error_class", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, OmnigentError)):
        cls = OmnigentError
    return cls(data["message"], data["code"])
