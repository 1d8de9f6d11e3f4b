"""The server side of `/communs/governance/1`: members read and vote from their own machines.

No token: the signature on a submitted record is the authorisation, checked against the roster
the record claims. Limits as on the other Communs protocols (protocol/README.md 5.6): a peer
holding more than `MAX_STREAMS_PER_PEER` streams is answered `busy`, as is a peer over its
requests per minute (reads and submissions counted apart); a request frame's length prefix is
checked before its payload is read; a whole request must come within 10 s and a stream idle for
60 s is closed. A submission is refused, in one sentence, by the cheap checks before the
signature is verified (governance/admission.py), and nothing is stored for a refused record.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any

from communs.protocol import govwire
from communs.protocol.errors import DecodeError

if TYPE_CHECKING:
    from communs.node.http.metrics import Metrics
    from communs.node.services.governance import GovernanceService

log = logging.getLogger("communs.exchange")

READ_SIZE = 1 << 20


class GovernanceServer:
    """Answers `/communs/governance/1` from the governance service's Ledger."""

    def __init__(self, gov: GovernanceService, metrics: Metrics | None, *,
                 rate: govwire.PeerRate | None = None,
                 max_streams_per_peer: int = govwire.MAX_STREAMS_PER_PEER,
                 request_timeout: float = govwire.REQUEST_TIMEOUT,
                 idle_timeout: float = govwire.STREAM_IDLE_TIMEOUT) -> None:
        self.gov = gov
        self.metrics = metrics
        self.rate = rate or govwire.PeerRate()
        self.max_streams_per_peer = max_streams_per_peer
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self._active: collections.Counter[str] = collections.Counter()

    def register(self, overlay: Any) -> None:
        overlay.serve(govwire.GOVERNANCE_PROTOCOL, self.handle)

    async def handle(self, stream: Any) -> None:
        peer = stream.peer_id
        if self._active[peer] >= self.max_streams_per_peer:
            self._count("busy")
            await self._end(stream, govwire.error("busy", f"more than {self.max_streams_per_peer} concurrent "
                                                  f"{govwire.GOVERNANCE_PROTOCOL} streams from one peer"))
            return
        self._active[peer] += 1
        try:
            await self._serve(stream, peer)
        except Exception as exc:  # a failed stream must never reach the adapter
            log.debug("governance stream from %s failed: %s", peer, exc)
            self._count("failed")
            await stream.reset()
        finally:
            self._active[peer] -= 1
            if self._active[peer] <= 0:
                del self._active[peer]

    async def _serve(self, stream: Any, peer: str) -> None:
        reader = govwire.FrameReader(govwire.MAX_REQUEST_FRAME)
        idle = self.request_timeout
        while True:
            try:
                payload = await self._next_payload(stream, reader, idle)
                if payload is None:
                    await stream.close()
                    return
                request = govwire.decode_request(payload)
            except DecodeError as exc:
                self._count("bad-request")
                code = "too-large" if "over the limit" in str(exc) else "bad-request"
                await self._end(stream, govwire.error(code, str(exc)))
                return
            except TimeoutError:
                if reader.buffered or idle == self.request_timeout:
                    self._count("timeout")
                    await stream.reset()
                else:
                    await stream.close()
                return
            submit = request["t"] == "submit"
            if not self.rate.admit(peer, submit, time.monotonic()):
                self._count("busy")
                limit = self.rate.submits_per_minute if submit else self.rate.reads_per_minute
                what = "submissions" if submit else "requests"
                await self._end(stream, govwire.error("busy", f"more than {limit} {what} per minute from one peer; "
                                                      "retry later"))
                return
            answer, outcome = await self._answer(request, peer)
            self._count(outcome)
            await self._write(stream, answer)
            idle = self.idle_timeout

    async def _next_payload(self, stream: Any, reader: govwire.FrameReader, idle: float) -> bytes | None:
        """The next request's payload, None at a clean end; TimeoutError past a deadline."""
        deadline = time.monotonic() + idle
        while True:
            payload = reader.next_payload()
            if payload is not None:
                return payload
            if reader.buffered and idle != self.request_timeout:  # a frame began: it must end within 10 s
                deadline = min(deadline, time.monotonic() + self.request_timeout)
                idle = self.request_timeout
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                data = await stream.read(READ_SIZE)
            if not data:
                if reader.buffered:
                    raise DecodeError("stream ended in the middle of a frame")
                return None
            reader.feed(data)

    async def _answer(self, request: dict[str, Any], peer: str) -> tuple[bytes, str]:
        from communs.node.services.governance import Refused, now_s

        gov = self.gov
        ledger = gov.ledger
        t = request["t"]
        now = now_s()
        if t == "list":
            return govwire.frame({"t": "proposals", "items": list_items(gov, now), "now": now}), "ok"
        if t == "get":
            status = ledger.proposals.get(request["id"])
            if status is None:
                from communs.protocol import ids
                return govwire.error("not-found", f"unknown proposal {ids.cid_str(request['id'])}"), "not-found"
            tally = status.current(now)
            return govwire.frame({
                "t": "proposal", "record": status.proposal.encode(), "roster": status.roster.encode(),
                "ballots": [b.encode() for b in status.ballots], "tally": tally.to_dict(),
                "status": tally.outcome, "now": now}), "ok"
        if t == "policy":
            state = ledger.current
            return govwire.frame({"t": "policy", "policy": state.policy.to_dict(), "version": state.policy_version,
                                  "proposal": state.policy_proposal, "roster": state.roster.encode(),
                                  "now": now}), "ok"
        if gov.submissions is None:
            return govwire.error("refused", "this node does not take submissions yet"), "refused"
        try:
            accepted = await gov.submissions.submit(request["record"], "libp2p", peer)
        except Refused as exc:
            return govwire.error("refused", str(exc)), "refused"
        counted = None if accepted.tally is None else accepted.tally.to_dict()
        return govwire.frame({"t": "receipt", "receipt": accepted.receipt.encode(), "tally": counted}), "accepted"

    async def _write(self, stream: Any, data: bytes) -> None:
        async with asyncio.timeout(30.0):
            await stream.write(data)

    async def _end(self, stream: Any, data: bytes) -> None:
        try:
            await self._write(stream, data)
            await stream.close()
        except Exception:
            await stream.reset()

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.stream_requests.labels(govwire.GOVERNANCE_PROTOCOL, outcome).inc()


def list_items(gov: GovernanceService, now: int) -> list[dict[str, Any]]:
    """Every proposal, newest first, with its signed record, up to the list answer's byte budget."""
    items: list[dict[str, Any]] = []
    total = 0
    statuses = sorted(gov.ledger.proposals.values(), key=lambda s: (s.proposal.opens, s.proposal.id), reverse=True)
    for status in statuses:
        p = status.proposal
        tally = status.current(now)
        raw = p.encode()
        total += len(raw)
        if total > govwire.LIST_ANSWER_BYTES and items:
            break
        items.append({"id": p.id, "kind": p.kind, "summary": p.summary(), "opens": p.opens, "closes": p.closes,
                      "tally": tally.to_dict(), "status": tally.outcome, "record": raw})
    return items

