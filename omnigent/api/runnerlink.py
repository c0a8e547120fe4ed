"""The API's side of a runner's direct data path (actors/runner_data.py): a request is
forwarded as it came (raw path, query and body) and the runner's answer passed back."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from yarl import URL

from omnigent.wire import GONE_HEADER, KEY_HEADER, KEY_REFUSED_STATUS

PASSED_ON = ("content-type", "allow")


class RunnerLinkDown(Exception):
    """The runner did not take the request. `unsent`: it surely never saw it, so sending
    it again (to a fresh link) cannot run it twice."""

    def __init__(self, unsent: bool) -> None:
        super().__init__("runner link down")
        self.unsent = unsent


@dataclass(frozen=True)
class RunnerLink:
    runner_id: str
    host_id: str
    url: str
    key: str

    async def forward(
        self,
        http: aiohttp.ClientSession,
        method: str,
        raw_path: str,
        query: str,
        body: bytes,
        content_type: str | None,
        extra_headers: dict | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        """The runner's status, body and the headers that matter to the client
        (Content-Type; Allow on a 405)."""
        url = URL(f"{self.url}{raw_path}{'?' + query if query else ''}", encoded=True)
        headers = {KEY_HEADER: self.key, **(extra_headers or {})}
        if content_type:
            headers["content-type"] = content_type
        try:
            async with http.request(method, url, data=body or None, headers=headers) as resp:
                data = await resp.read()
                if resp.headers.get(GONE_HEADER):
                    raise RunnerLinkDown(unsent=True)
                if resp.status == KEY_REFUSED_STATUS and not data:
                    raise RunnerLinkDown(unsent=True)  # key refused: a new runner answers there
                return (
                    resp.status,
                    data,
                    {k: resp.headers[k] for k in PASSED_ON if k in resp.headers},
                )
        except aiohttp.ClientConnectorError:
            raise RunnerLinkDown(unsent=True) from None
        except aiohttp.ClientError:
            raise RunnerLinkDown(unsent=False) from None
