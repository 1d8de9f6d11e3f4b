"""The client side of `/communs/governance/1`: one request, one answer, on one stream.

Used by the member's CLI (a light client: a bare libp2p host, no data folder), by the benchmark
and by tests. The answers' records are checked by governance/light.py, not here: this module only
frames requests, bounds the wait and turns error answers into one-sentence exceptions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from communs.protocol import govwire
from communs.protocol.errors import DecodeError


class GovernanceClientError(Exception):
    """The node could not be asked, or broke the protocol; one sentence."""


class GovernanceRefused(GovernanceClientError):
    """The node answered with an error (`code`): refused, not-found, busy, ..."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code


class GovernanceClient:
    """Requests to one peer over `overlay` (a protocol.libp2p Overlay), one stream kept open for several."""

    def __init__(self, overlay: Any, peer: str, timeout: float = govwire.REQUEST_TIMEOUT) -> None:
        self.overlay = overlay
        self.peer = peer
        self.timeout = timeout
        self._stream: Any = None
        self._reader = govwire.FrameReader(govwire.MAX_ANSWER_FRAME)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its answer map; GovernanceRefused for an error answer."""
        if self._stream is None:
            try:
                self._stream = await self.overlay.open_stream(self.peer, [govwire.GOVERNANCE_PROTOCOL])
            except Exception as exc:
                raise GovernanceClientError(f"cannot open {govwire.GOVERNANCE_PROTOCOL} to {self.peer}: {exc}") \
                    from None
        try:
            await self._stream.write(govwire.frame(message))
            async with asyncio.timeout(self.timeout):
                answer = await self._read()
        except TimeoutError:
            await self._drop()
            raise GovernanceClientError(f"node {self.peer} did not answer within {self.timeout:.0f} s") from None
        except DecodeError as exc:
            await self._drop()
            raise GovernanceClientError(f"node {self.peer} broke the governance protocol: {exc}") from None
        except GovernanceClientError:
            await self._drop()
            raise
        except Exception as exc:
            await self._drop()
            raise GovernanceClientError(f"the stream to node {self.peer} failed: {exc or type(exc).__name__}") \
                from None
        if answer["t"] == "error":
            if answer["code"] in ("bad-request", "too-large", "busy"):
                await self._drop()
            raise GovernanceRefused(answer["code"], answer["msg"])
        return answer

    async def _read(self) -> dict[str, Any]:
        while True:
            payload = self._reader.next_payload()
            if payload is not None:
                return govwire.decode_answer(payload)
            data = await self._stream.read(1 << 20)
            if not data:
                raise GovernanceClientError(f"node {self.peer} closed the stream without an answer")
            self._reader.feed(data)

    async def close(self) -> None:
        if self._stream is not None:
            try:
                await self._stream.close_write()
                await self._stream.close()
            except Exception:
                await self._drop()
            self._stream = None

    async def _drop(self) -> None:
        stream, self._stream = self._stream, None
        self._reader = govwire.FrameReader(govwire.MAX_ANSWER_FRAME)
        if stream is not None:
            try:
                await stream.reset()
            except Exception:
                pass

    # -- the requests

    async def list(self) -> dict[str, Any]:
        return await self.request({"t": "list"})

    async def get(self, proposal_id: bytes) -> dict[str, Any]:
        return await self.request({"t": "get", "id": proposal_id})

    async def policy(self) -> dict[str, Any]:
        return await self.request({"t": "policy"})

    async def submit(self, record: bytes) -> dict[str, Any]:
        return await self.request({"t": "submit", "record": record})
