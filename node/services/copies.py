"""Copies across the federation: holding claims, proof-of-holding challenges, and the `min_copies` rule.

What this node does (protocol/README.md "Holding claims" and "Proof of holding" specify the records):
* Claims. Every `claims_every` seconds (and at once when a dataset completes or is dropped) it signs a
  claim for each manifest held complete here (own or replica) that has no fresh claim of its own, a
  refresh for claims past half their life, and a withdrawal for each of its live claims whose manifest
  is no longer held. Claims are stored in the catalog like anyone's, and published on the federation's
  claims topic in batches. A node never claims what is not in state own/complete.
* Taking claims in. From gossip (the topic validator checks size, signature, expiry bounds and a
  per-claimer rate, and drops replays it can see) and from claims sync (/communs/claims/1, a peer's
  claims stored after a cursor, paged). The catalog keeps only the newest claim per node and manifest.
* Challenges. At random intervals (mean `challenge_every_s`, at most CHALLENGES_PER_MINUTE), a live
  claim by another node on a manifest held here is challenged; a wrong proof or "not held" marks the
  claim failed (it stops counting until a challenge passes), three timeouts in a row count as a failure.
  Claims on manifests not held here are cross-checked: the same challenge to two holders, and equal
  answers verify both. The server side answers at most CHALLENGES_PER_PEER_MINUTE per peer.
* The rule (governance/copies.py). Under `min_copies = N`, an accepted dataset is wanted here only while
  fewer than N other nodes hold it, and a replica is released once it is not among the N keepers chosen
  by rendezvous hashing and those keepers are verified, after `release_grace_s`. How long that has been
  seen is stored in the catalog each round (a restart neither starts the grace over nor counts the time
  the node was stopped), and one round reads the catalog in a few queries (copies_round.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from communs.governance import copies as rule
from communs.governance import policy as policy_mod
from communs.node.jsondoc import JsonDict
from communs.node.services import copies_round
from communs.node.services.claim_gate import MAX_CLAIMS_PER_MESSAGE, AnswerGate, ClaimGate
from communs.node.services.datasets import COMPLETE, IN_PROGRESS, NOT_WANTED, OWN
from communs.node.services.storage import UsesStorage
from communs.protocol import encoding, holding, ids, keys
from communs.protocol.errors import DecodeError, RecordError
from communs.protocol.holding import Challenge, HoldingClaim
from communs.protocol.libp2p.gossipguard import TokenBucket
from communs.protocol.net import ByteStream, Message
from communs.protocol.records import Manifest
from communs.storage.catalog import ClaimRow, ManifestInfo
from communs.storage.errors import StorageError

if TYPE_CHECKING:
    from communs.node.context import NodeContext
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.governance import GovernanceService
    from communs.node.services.replication import ReplicationService
    from communs.node.services.storage import StorageService
    from prometheus_client import Counter, Gauge

log = logging.getLogger("communs.copies")

MAX_CLAIMS_PER_NODE = 200_000  # live claims kept per claimer; more are refused
SYNC_PAGES = 64  # pages of claims asked from one peer in one sync session
CHALLENGES_PER_MINUTE = 12  # challenges this node sends, at most
CHALLENGE_TIMEOUT = 15.0
TIMEOUTS_AS_FAILURE = 3
STREAM_TIMEOUT = 10.0
PROOF_POSITIONS = 3


def _now() -> int:
    return int(time.time())


async def read_message(stream: ByteStream, max_bytes: int, timeout: float) -> JsonDict | None:
    """One framed map from `stream`, or None at a clean end; DecodeError/TimeoutError otherwise."""
    return (await read_sized(stream, max_bytes, timeout))[0]


async def read_sized(stream: ByteStream, max_bytes: int, timeout: float) -> tuple[JsonDict | None, int]:
    """As `read_message`, with the bytes of the frame (its length prefix included; 0 at a clean end)."""
    buf = b""
    async with asyncio.timeout(timeout):
        while True:
            value, used = holding.unframe(buf, max_bytes)
            if value is not None:
                return value, used
            data = await stream.read(max_bytes + 16 - len(buf))
            if not data:
                if buf:
                    raise DecodeError("the stream ended inside a message")
                return None, 0
            buf += data


FIRST_CLAIMS_S = 10.0  # the first claims round after start, at the latest


class CopiesService(UsesStorage):
    def __init__(self, ctx: NodeContext, storage: StorageService, governance: GovernanceService,
                 datasets: DatasetsService, replication: ReplicationService,
                 catalog_synced: Callable[[str], bool] | None = None) -> None:
        self.ctx = ctx
        # Claims of a peer are asked for once its catalog sync has ended: a joining node takes in the
        # manifests first (the claims name them), and the two never compete for the event loop.
        self.catalog_synced = catalog_synced
        self.storage = storage
        self.governance = governance
        self.datasets = datasets
        self.replication = replication
        self.gate = ClaimGate()
        self.answers = AnswerGate()
        self._incoming: asyncio.Queue[list[HoldingClaim]] = asyncio.Queue(maxsize=10_000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claim_wake = asyncio.Event()
        self._cursors: dict[str, int] = {}  # peer -> stamp of the last claim it sent us
        self._last_sync: dict[str, float] = {}
        self._no_claims: dict[str, float] = {}  # peers that do not speak /communs/claims/1, until when
        self._timeouts: collections.Counter[tuple[str, bytes]] = collections.Counter()
        self._challenge_budget: TokenBucket | None = None  # set at start, from the configured mean interval
        self.challenges: collections.Counter[str] = collections.Counter()
        self.counts = self.gate.counts
        self.rng = random.Random()
        self._metrics: tuple[Gauge, Counter] | None = None
        self._bytes: Counter | None = None  # communs_claims_bytes_total{direction, channel}, when metrics are on

    # ---- lifecycle -------------------------------------------------------------------------------

    @property
    def topic(self) -> str:
        return f"/communs/{self.ctx.config.federation}/claims/1"

    @property
    def ttl(self) -> int:
        return int(self.ctx.config.claim_ttl_s)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ds = self.datasets
        ds.on_published.append(self._changed)
        ds.on_complete.append(self._changed)
        ds.on_unwanted.append(self._changed)
        self.replication.prioritise = self.prioritise
        if self.ctx.metrics is not None:
            from prometheus_client import Counter, Gauge

            r = self.ctx.metrics.registry
            self._metrics = (
                Gauge("communs_datasets_by_copies", "Dataset versions known here by their number of live copies "
                      "(0 to 9, and '10+')", ["copies"], registry=r),
                Counter("communs_challenges_total", "Proof-of-holding challenges sent, by outcome", ["outcome"],
                        registry=r),
            )
            self._bytes = self.ctx.metrics.claims_bytes

    def _count(self, direction: str, channel: str, size: int) -> None:
        """Add `size` bytes of claims traffic (thread-safe: the gossip validator runs in libp2p's thread)."""
        if self._bytes is not None:
            self._bytes.labels(direction, channel).inc(size)

    async def overlay_ready(self) -> None:
        # at most CHALLENGES_PER_MINUTE, unless the configured mean interval asks for more (tests)
        per_minute = max(float(CHALLENGES_PER_MINUTE), 60.0 / float(self.ctx.config.challenge_every_s))
        self._challenge_budget = TokenBucket(per_minute / 60.0, per_minute)
        overlay = self.ctx.overlay
        overlay.serve(holding.CHALLENGE_PROTOCOL, self._answer_challenge)
        overlay.serve(holding.CLAIMS_PROTOCOL, self._answer_claims)
        subscription = await overlay.subscribe(self.topic, self._validate)
        await overlay.push_identify()
        self.ctx.spawn(self._consume(subscription), "copies-gossip")
        self.ctx.spawn(self._store_incoming(), "copies-store")
        self.ctx.spawn(self._claim_loop(), "copies-claims")
        self.ctx.spawn(self._sync_loop(), "copies-sync")
        self.ctx.spawn(self._challenge_loop(), "copies-challenge")
        self.ctx.spawn(self._rule_loop(), "copies-rule")

    async def stop(self) -> None:
        return None

    async def _changed(self, _what: object) -> None:
        self._claim_wake.set()

    # ---- counting --------------------------------------------------------------------------------

    async def counts_by_manifest(self, manifests: Sequence[bytes] | None = None) -> dict[bytes, int]:
        """Copies per manifest: distinct nodes with a live claim that has not failed a challenge."""
        return await self.catalog.claim_counts(_now(), manifests)

    async def holders(self, manifest_id: bytes) -> JsonDict:
        """The contract's answer of `GET /api/v1/datasets/{id}/holders`."""
        now = _now()
        rows = await self.catalog.live_claims(now, manifest_id)
        names = self._names()
        holders = [{"peer_id": keys.peer_id(r.node), "name": names.get(keys.peer_id(r.node), ""),
                    "since": r.since, "expires": r.expires,
                    "verified_at": r.verified_at if r.verified_at is not None and now - r.verified_at <= self.ttl
                    else None}
                   for r in rows if copies_round.counted(r)]
        for h in holders:
            if h["peer_id"] == self.ctx.peer_id:
                h["name"] = self.ctx.config.name  # this node's own copy is never challenged: verified_at null
        return {"id": ids.cid_str(manifest_id), "copies": len(holders), "holders": holders}

    def _names(self) -> dict[str, str]:
        try:
            info = self.governance.members_info()
        except Exception:
            return {}
        return {m["peer_id"]: m["name"] for m in info.get("members", [])}

    async def status(self) -> JsonDict:
        n = self._policy().min_copies
        held = [i for i in await self.catalog.list_manifests() if i.state in (OWN, COMPLETE)]
        counts = await self.counts_by_manifest([i.id for i in held]) if held else {}
        risky = set(rule.endangered([i.id for i in held], counts, n))
        return {"copies": {
            "min_copies": n,
            "endangered": [{"id": ids.cid_str(i.id), "title": i.title, "copies": counts.get(i.id, 0)}
                           for i in held if i.id in risky],
            "releasing": [{"id": ids.cid_str(m), "observed_s": o, "grace_s": int(self.ctx.config.release_grace_s)}
                          for m, (o, _) in sorted((await self.catalog.release_graces()).items())],
            "challenges": dict(self.challenges),
            "claims": {k: v for k, v in self.counts.items()},
        }}

    async def refresh_metrics(self) -> None:
        if self._metrics is None:
            return
        counts = await self.counts_by_manifest()
        known = [i.id for i in await self.catalog.list_manifests()]
        by: collections.Counter[str] = collections.Counter()
        for mid in known:
            c = counts.get(mid, 0)
            by[str(c) if c < 10 else "10+"] += 1
        gauge = self._metrics[0]
        for label in [str(i) for i in range(10)] + ["10+"]:
            gauge.labels(label).set(by.get(label, 0))

    def _policy(self) -> policy_mod.Policy:
        policy: policy_mod.Policy = self.datasets.policy()
        return policy

    # ---- our own claims ----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        every = max(1.0, min(60.0, self.ttl / 8))
        # The first round waits a little (unless something changed): claims live a day, and a node that was
        # off long enough re-signs everything it holds, which at start competed with the catalog sync for
        # the one interpreter (scripts/bench/sync.py: 2,000 claims signed and gossiped at start by the source,
        # and checked by the new node, were part of what cost that sync a third of its rate).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._claim_wake.wait(), min(every, FIRST_CLAIMS_S))
        while True:
            try:
                await self.claim_now()
            except StorageError as exc:
                log.warning("could not update this node's holding claims: %s", exc)
            self._claim_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._claim_wake.wait(), every)

    async def claim_now(self) -> list[HoldingClaim]:
        """Sign claims for what is held complete here and lacks a fresh claim, and withdrawals for what is
        no longer held; store and publish them. Returns what was signed."""
        now_ms = int(time.time() * 1000)
        now = now_ms // 1000
        me = self.ctx.key.public
        repairing = self.replication.repairing
        held = {i.id: i for i in await self.catalog.list_manifests()
                if i.state in (OWN, COMPLETE) and i.id not in repairing}
        mine = {r.manifest: r for r in await self.catalog.live_claims(now, include_withdrawn=True)
                if r.node == me}
        key, ttl = self.ctx.key, self.ttl

        def sign_all() -> list[HoldingClaim]:
            out: list[HoldingClaim] = []
            for mid in held:
                row = mine.get(mid)
                if row is not None and not row.withdrawn and row.expires - now > ttl / 2:
                    continue
                since = row.since if row is not None and not row.withdrawn else now
                issued = max(now_ms, (row.issued + 1) if row is not None else 0)
                out.append(HoldingClaim.create(key, manifest=mid, since=since, issued_ms=issued, ttl=ttl))
            for mid, row in mine.items():
                if mid not in held and not row.withdrawn:
                    out.append(HoldingClaim.create(key, manifest=mid, since=row.since,
                                                   issued_ms=max(now_ms, row.issued + 1), withdrawn=True))
            return out

        # thousands of signatures (a node back after a day off) would hold the event loop for seconds
        signed = await asyncio.to_thread(sign_all) if len(held) + len(mine) > 64 else sign_all()
        if not signed:
            return []
        await self._store(signed)
        self.gate.remember(signed)
        for start in range(0, len(signed), MAX_CLAIMS_PER_MESSAGE):
            batch = signed[start:start + MAX_CLAIMS_PER_MESSAGE]
            message = encoding.encode([c.encode() for c in batch])
            try:
                await self.ctx.overlay.publish(self.topic, message)
                self.counts["published"] += len(batch)
                self._count("out", "gossip", len(message))
            except Exception as exc:
                log.info("could not publish %d holding claim(s): %s (claims sync will carry them)", len(batch), exc)
        return signed

    # ---- taking claims in ----------------------------------------------------------------------------

    def check_batch(self, data: bytes, now: float) -> list[HoldingClaim]:
        """The claims of one gossip message or sync batch to take in (claim_gate.py)."""
        return self.gate.admit(data, now)

    def _validate(self, data: bytes, sender: str) -> str | None:
        """The claims topic validator (libp2p's thread): nothing invalid, replayed or over rate is relayed."""
        if sender == self.ctx.peer_id:
            return None  # our own message, signed and stored here before it was published
        self._count("in", "gossip", len(data))  # each message once: libp2p drops copies seen before this
        try:
            fresh = self.check_batch(data, time.time())
        except RecordError as exc:
            self.counts["rejected"] += 1
            log.info("refused a holding claims message from %s: %s", sender, exc)
            return f"bad claims: {exc}"
        except Exception as exc:  # never let a validator bug take libp2p's task down
            return f"bad claims: {type(exc).__name__}"
        if not fresh:
            return "nothing new"
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._enqueue, fresh)
        return None

    def _enqueue(self, claims: list[HoldingClaim]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._incoming.put_nowait(claims)

    async def _consume(self, subscription: AsyncIterator[Message]) -> None:
        async for _msg in subscription:
            pass  # the validator queued the claims already

    async def _store_incoming(self) -> None:
        while True:
            claims = await self._incoming.get()
            try:
                await self._store(claims)
            except StorageError as exc:
                log.warning("could not store %d holding claim(s): %s", len(claims), exc)

    async def _store(self, claims: Sequence[HoldingClaim]) -> int:
        """Store claims newer than what is known; claimers over MAX_CLAIMS_PER_NODE live claims get no more."""
        now = _now()
        rows = []
        per_node: dict[bytes, int] = {}
        me = self.ctx.key.public
        for c in claims:
            if c.node != me:
                if c.node not in per_node:
                    per_node[c.node] = await self.catalog.claims_by_node(c.node, now)
                if per_node[c.node] >= MAX_CLAIMS_PER_NODE:
                    self.counts["over_limit"] += 1
                    continue
                per_node[c.node] += 1
            rows.append((c.node, c.manifest, c.issued, c.since, c.expires, c.withdrawn, c.encode()))
        changed = await self.catalog.put_claims(rows) if rows else 0
        self.counts["stored"] += changed
        if changed:
            self.replication.poke()
        return changed

    # ---- claims sync -------------------------------------------------------------------------------

    async def _answer_claims(self, stream: ByteStream) -> None:
        try:
            request, size = await read_sized(stream, 256, STREAM_TIMEOUT)
            if request is None:
                return
            self._count("in", "sync_server", size)
            after = request.get("after")
            if type(after) is not int or after < 0 or set(request) != {"after"}:
                await stream.write(holding.frame({"error": "a claims request is a map of exactly 'after', an "
                                                           "unsigned integer"}))
                return
            rows = await self.catalog.claims_since(after, _now(), holding.MAX_CLAIMS_PER_ANSWER)
            nxt = rows[-1][0] if rows else after
            answer = holding.frame({"claims": [r for _, r in rows], "next": nxt,
                                    "more": len(rows) == holding.MAX_CLAIMS_PER_ANSWER})
            self._count("out", "sync_server", len(answer))
            await stream.write(answer)
        except (DecodeError, TimeoutError) as exc:
            log.debug("claims request from %s refused: %s", stream.peer_id, exc)

    async def sync_claims(self, peer: str) -> int:
        """Take in the claims `peer` stored since we last asked it (at most SYNC_PAGES pages)."""
        cursor = self._cursors.get(peer, 0)
        stored = 0
        for _ in range(SYNC_PAGES):
            stream = await self.ctx.overlay.open_stream(peer, [holding.CLAIMS_PROTOCOL], timeout=STREAM_TIMEOUT)
            try:
                request = holding.frame({"after": cursor})
                self._count("out", "sync_client", len(request))
                await stream.write(request)
                await stream.close_write()
                answer, size = await read_sized(stream, holding.MAX_CLAIMS_MESSAGE_BYTES, 30.0)
                self._count("in", "sync_client", size)
            finally:
                with contextlib.suppress(Exception):
                    await stream.close()
            if answer is None or "error" in answer:
                raise DecodeError(f"peer {peer} refused the claims request: {answer and answer.get('error')}")
            raws, nxt, more = answer.get("claims"), answer.get("next"), answer.get("more")
            if not isinstance(raws, list) or type(nxt) is not int or type(more) is not bool or nxt < cursor:
                raise DecodeError(f"peer {peer} sent a malformed claims answer")
            # Signatures are checked in a worker thread (the gate is thread-safe): a page holds up to
            # thousands of claims, which would hold the event loop for most of a second.
            for good in await asyncio.to_thread(self._check_page, raws, time.time()):
                stored += await self._store(good) if good else 0
            cursor = nxt
            self._cursors[peer] = cursor
            if not more:
                break
        return stored

    def _check_page(self, raws: list[object], now: float) -> list[list[HoldingClaim]]:
        """The claims of one sync page to take in, in groups of at most MAX_CLAIMS_PER_MESSAGE; one bad claim
        costs only itself here, since the peer relays what others signed."""
        groups: list[list[HoldingClaim]] = []
        for start in range(0, len(raws), MAX_CLAIMS_PER_MESSAGE):
            good: list[HoldingClaim] = []
            for raw in raws[start:start + MAX_CLAIMS_PER_MESSAGE]:
                try:
                    good.extend(self.check_batch(encoding.encode([raw]), now))
                except RecordError:
                    self.counts["rejected"] += 1
            groups.append(good)
        return groups

    async def _sync_loop(self) -> None:
        every = float(self.ctx.config.claims_sync_s)
        while True:
            await asyncio.sleep(min(1.0, every))
            now = time.monotonic()
            for peer in self.ctx.overlay.peer_ids():
                if self._no_claims.get(peer, 0) > now:
                    continue
                if self.catalog_synced is not None and not self.catalog_synced(peer):
                    continue
                last = self._last_sync.get(peer)
                if last is not None and now - last < every * self.rng.uniform(0.8, 1.2):
                    continue
                self._last_sync[peer] = now
                try:
                    n = await self.sync_claims(peer)
                    self.counts["synced"] += n
                except Exception as exc:
                    log.debug("claims sync with %s failed: %s", peer, exc)
                    self._no_claims[peer] = now + min(600.0, every * 4)

    # ---- proof of holding: answering ---------------------------------------------------------------

    async def _answer_challenge(self, stream: ByteStream) -> None:
        peer = stream.peer_id
        try:
            request = await read_message(stream, holding.MAX_MESSAGE_BYTES, STREAM_TIMEOUT)
            if request is None:
                return
            answer = await self.answer(peer, request, time.monotonic())
        except (DecodeError, TimeoutError) as exc:
            answer = {"error": f"refused: {exc}"}
        await stream.write(holding.frame(answer))

    async def answer(self, peer: str, request: JsonDict, now: float) -> JsonDict:
        """The answer to one challenge from `peer`: {"proof"} or {"error"} in one sentence."""
        if not self.answers.allow(peer, now):
            return {"error": "busy: too many challenges from this peer; try again in a minute"}
        try:
            ch = Challenge.from_dict(request)
        except RecordError as exc:
            return {"error": f"malformed challenge: {exc}"}
        info = await self.catalog.get_manifest(ch.manifest)
        if info is None or info.raw is None or info.state not in (OWN, COMPLETE):
            return {"error": "not held"}
        manifest = Manifest.decode(info.raw, verify=False)
        digests = manifest.chunk_digests()
        try:
            holding.check_positions(ch.positions, len(digests))
        except DecodeError as exc:
            return {"error": str(exc)}
        try:
            datas = await asyncio.to_thread(lambda: [self.chunks.get(digests[p]) for p in ch.positions])
        except StorageError:
            return {"error": "not held"}
        return {"proof": holding.proof(ch.nonce, datas)}

    # ---- proof of holding: asking ------------------------------------------------------------------

    async def challenge(self, peer: str, ch: Challenge) -> bytes | str:
        """Ask `peer`; its proof, or its refusal in words. PeerUnavailable-like errors propagate."""
        stream = await self.ctx.overlay.open_stream(peer, [holding.CHALLENGE_PROTOCOL], timeout=STREAM_TIMEOUT)
        try:
            await stream.write(holding.frame(ch.to_dict()))
            await stream.close_write()
            answer = await read_message(stream, holding.MAX_MESSAGE_BYTES, CHALLENGE_TIMEOUT)
        finally:
            with contextlib.suppress(Exception):
                await stream.close()
        if answer is None:
            return "no answer"
        proof = answer.get("proof")
        if type(proof) is bytes and len(proof) == 32:
            return proof
        error = answer.get("error")
        return error if isinstance(error, str) else "malformed answer"

    async def _expected(self, info: ManifestInfo, ch: Challenge) -> bytes | None:
        """The proof computed from the chunks held here; None if they cannot be read."""
        assert info.raw is not None
        digests = Manifest.decode(info.raw, verify=False).chunk_digests()
        try:
            datas = await asyncio.to_thread(lambda: [self.chunks.get(digests[p]) for p in ch.positions])
        except StorageError:
            return None
        return holding.proof(ch.nonce, datas)

    async def challenge_one(self, claim: ClaimRow) -> str:
        """Challenge one claim and record the outcome: "passed", "failed", "timeout", "busy" or "skipped"."""
        info = await self.catalog.get_manifest(claim.manifest)
        if info is None or info.raw is None:
            return "skipped"
        manifest = Manifest.decode(info.raw, verify=False)
        count = len(manifest.chunk_digests())
        if count == 0:
            return "skipped"
        ch = Challenge(os.urandom(holding.NONCE_SIZE), claim.manifest,
                       holding.choose_positions(os.urandom(16), count, PROOF_POSITIONS))
        peer = keys.peer_id(claim.node)
        held_here = info.state in (OWN, COMPLETE)
        witness: str | None = None
        if held_here:
            expected = await self._expected(info, ch)
            if expected is None:
                return "skipped"
        else:
            others = [r for r in await self.catalog.live_claims(_now(), claim.manifest)
                      if r.node not in (claim.node, self.ctx.key.public) and r.verified_at is not None]
            if not others:
                return "skipped"
            witness = keys.peer_id(self.rng.choice(others).node)
            try:
                answer = await self.challenge(witness, ch)
            except Exception:
                return "skipped"
            if not isinstance(answer, bytes):
                return "skipped"
            expected = answer
        try:
            got = await self.challenge(peer, ch)
        except Exception as exc:
            self._timeouts[(peer, claim.manifest)] += 1
            if self._timeouts[(peer, claim.manifest)] < TIMEOUTS_AS_FAILURE:
                return self._outcome("timeout")
            log.warning("holder %s did not answer %d challenges in a row for %s (%s): its claim stops counting",
                        peer, TIMEOUTS_AS_FAILURE, ids.cid_str(claim.manifest), exc)
            self._timeouts.pop((peer, claim.manifest), None)
            await self.catalog.claim_checked(claim.node, claim.manifest, _now(), False)
            return self._outcome("failed")
        self._timeouts.pop((peer, claim.manifest), None)
        if isinstance(got, str) and got.startswith("busy"):
            return self._outcome("busy")
        if got == expected:
            await self.catalog.claim_checked(claim.node, claim.manifest, _now(), True)
            return self._outcome("passed")
        if witness is not None:
            return self._outcome("disagreed")  # one of the two is wrong; neither is marked
        log.warning("holder %s failed a proof-of-holding challenge for %s (%s): its claim stops counting",
                    peer, ids.cid_str(claim.manifest), got if isinstance(got, str) else "wrong proof")
        await self.catalog.claim_checked(claim.node, claim.manifest, _now(), False)
        return self._outcome("failed")

    def _outcome(self, what: str) -> str:
        self.challenges[what] += 1
        if self._metrics is not None:
            self._metrics[1].labels(what).inc()
        return what

    def _pick(self, claims: list[ClaimRow]) -> ClaimRow | None:
        """Which of one manifest's claims to challenge: another node's, least recently verified first."""
        me = self.ctx.key.public
        todo = [c for c in claims if c.node != me]
        if not todo:
            return None
        return min(todo, key=lambda c: (c.verified_at or 0, self.rng.random()))

    async def _challenge_loop(self) -> None:
        mean = float(self.ctx.config.challenge_every_s)
        while True:
            await asyncio.sleep(self.rng.expovariate(1.0 / mean))
            if self._challenge_budget is None or not self._challenge_budget.take(time.monotonic()):
                continue
            try:
                infos = await self.catalog.list_manifests()
                held = [i.id for i in infos if i.state in (OWN, COMPLETE)]
                # mostly what is held here (checked alone), sometimes anything known (checked against a witness)
                pool = held if held and self.rng.random() < 0.8 else [i.id for i in infos]
                if not pool:
                    continue
                claim = self._pick(await self.catalog.live_claims(_now(), self.rng.choice(pool)))
                if claim is not None:
                    await self.challenge_one(claim)
            except StorageError as exc:
                log.warning("challenge round failed: %s", exc)

    # ---- the min_copies rule -----------------------------------------------------------------------

    async def prioritise(self, rows: list[ManifestInfo]) -> list[ManifestInfo]:
        """Replication's candidates under the policy: with `min_copies = N`, those that N other nodes hold
        are not fetched (state not-wanted, with the reason); with the rule or a storage quota, the rest come
        fewest copies first (the most endangered take the room first)."""
        policy = self._policy()
        n = policy.min_copies
        if not rows or (n <= 0 and policy.storage_quota_bytes is None):
            return rows  # no rule, no quota: the scheduler's own order (newest, then smallest, first)
        counts = await self.counts_by_manifest([r.id for r in rows])
        if n <= 0:
            return sorted(rows, key=lambda r: (counts.get(r.id, 0), -r.created, r.size))
        keep, drop = [], []
        for r in rows:
            others = counts.get(r.id, 0)
            if r.state == IN_PROGRESS and not rule.needs_copy(n, others):
                drop.append(r.id)
            else:
                keep.append(r)
        if drop:
            await self.catalog.set_states(
                [(mid, NOT_WANTED, f"{n} other nodes hold it (min_copies = {n}); fetched if fewer do")
                 for mid in drop])
            for cb in self.datasets.on_unwanted:
                if cb != self._changed:
                    await cb(drop)
        return sorted(keep, key=lambda r: (counts.get(r.id, 0), -r.created, r.size))

    async def _rule_loop(self) -> None:
        every = self.rule_every()
        while True:
            await asyncio.sleep(every * self.rng.uniform(0.8, 1.2))
            try:
                await self.apply_rule()
            except StorageError as exc:
                log.warning("min_copies rule round failed: %s", exc)

    def rule_every(self) -> float:
        """The mean interval between two rounds of the rule."""
        return max(1.0, min(30.0, self.ttl / 20))

    async def apply_rule(self) -> None:
        """Release replicas that N verified others keep; want back what fewer than N others hold
        (copies_round.py reads and decides; this writes)."""
        policy = self._policy()
        if policy.min_copies <= 0:
            return
        now = _now()
        inp = await copies_round.gather(self.catalog, now)
        # rounds come every rule_every() (x1.2 at most): a longer gap is time nobody looked (governance/copies.py)
        decided = copies_round.plan(inp, policy, self.ctx.key.public, now=now, ttl=self.ttl,
                                    grace_s=int(self.ctx.config.release_grace_s),
                                    max_gap_s=max(10, int(3 * self.rule_every())))
        changes = [(mid, NOT_WANTED, reason) for mid, reason in decided.released] + \
                  [(mid, IN_PROGRESS, reason) for mid, reason in decided.wanted]
        if changes:
            await self.catalog.set_states(changes)
        await self.catalog.save_release_graces(copies_round.grace_rows(decided.graces))
        released = [mid for mid, _ in decided.released]
        wanted = [mid for mid, _ in decided.wanted]
        for mid, reason in decided.released:
            log.info("released %s: %s", ids.cid_str(mid), reason)
        if released:
            for cb in self.datasets.on_unwanted:
                if cb != self._changed:
                    await cb(released)
            self._claim_wake.set()
        if wanted:
            for cb in self.datasets.on_wanted:
                await cb(wanted)
