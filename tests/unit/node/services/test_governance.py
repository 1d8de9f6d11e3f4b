"""GovernanceService over a real catalog file, without a network: storing, reloading, the closing
timer, policy hooks, and the status a refusal is answered with."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from communs.governance.ledger import Ledger, audit
from communs.governance.policy import Policy
from communs.governance.records import Ballot, Proposal
from communs.node.http.metrics import Metrics
from communs.node.services.governance import GovernanceService, Refused
from communs.protocol import keys
from communs.storage.catalog import Catalog
from communs.storage.errors import CatalogError

POLICY = {"accept_licences": ["CC0-1.0"], "refuse_licences": [], "max_dataset_bytes": None,
          "storage_quota_bytes": None, "trusted_publishers": "any", "refused_publishers": []}


class FakeNode:
    """The few attributes the service uses; everything else it touches is real (catalog, ledger)."""

    def __init__(self, root: Path, node_key: keys.SigningKey, catalog: Any) -> None:
        self.root = root
        self.key = node_key
        self.metrics = Metrics()
        self.governance: Any = None
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task


@pytest.fixture
def members() -> list[keys.SigningKey]:
    return [keys.SigningKey.generate() for _ in range(3)]


@pytest.fixture
def root(tmp_path: Path, members: list[keys.SigningKey]) -> Path:
    doc = [{"key": m.public.hex(), "name": f"m{i}"} for i, m in enumerate(members)]
    (tmp_path / "founders.json").write_text(json.dumps(doc))
    return tmp_path


@pytest.fixture
def node_key() -> keys.SigningKey:
    return keys.SigningKey.generate()


@pytest.fixture
async def catalog(root: Path) -> AsyncIterator[Catalog]:
    cat = await Catalog.open(root / "catalog.sqlite")
    yield cat
    await cat.close()


async def started(root: Path, node_key: keys.SigningKey, catalog: Any) -> GovernanceService:
    service = GovernanceService(FakeNode(root, node_key, catalog), SimpleNamespace(catalog=catalog))  # type: ignore[arg-type]
    await service.start()
    return service


def proposal(service: GovernanceService, key: keys.SigningKey, closes_in: int = 3600, **kw: Any) -> bytes:
    now = int(time.time())
    kind = kw.pop("kind", "policy")
    body = kw.pop("body", POLICY)
    return Proposal.create(key, kind=kind, body=body, roster=service.roster.hash, opens=now,
                           closes=now + closes_in, nonce=os.urandom(16)).encode()


def ballot(key: keys.SigningKey, pid: bytes, choice: str = "yes") -> bytes:
    return Ballot.create(key, proposal=pid, choice=choice, ts=int(time.time())).encode()


async def stored(catalog: Catalog) -> list[bytes]:
    return [row.raw for row in await catalog.gov_entries()]


async def test_founds_once_then_reloads_the_stored_log(root: Path, node_key: keys.SigningKey, catalog: Catalog,
                                                       members: list[keys.SigningKey]) -> None:
    first = await started(root, node_key, catalog)
    assert len(first.roster) == 3 and first.policy == Policy()
    assert [r.kind for r in await catalog.gov_entries()] == ["genesis"]
    pid = (await first.submit_proposal(proposal(first, members[0]))).id
    await first.stop()

    again = await started(root, node_key, catalog)  # same catalog: loads, does not found again
    assert [r.kind for r in await catalog.gov_entries()] == ["genesis", "proposal"]
    assert again.get_proposal(pid)["tally"]["outcome"] == "open"
    await again.stop()


async def test_a_passed_proposal_is_stored_in_one_step_and_hooks_run_after(
        root: Path, node_key: keys.SigningKey, catalog: Catalog, members: list[keys.SigningKey]) -> None:
    service = await started(root, node_key, catalog)
    seen: list[tuple[Policy, int]] = []

    async def hook(policy: Policy) -> None:
        seen.append((policy, len(await catalog.gov_entries())))

    async def broken(policy: Policy) -> None:
        raise RuntimeError("a subscriber's bug must not undo a vote")

    service.on_policy_change += [broken, hook]
    pid = (await service.submit_proposal(proposal(service, members[0]))).id
    await service.submit_ballot(pid, ballot(members[0], pid))
    await service.submit_ballot(pid, ballot(members[1], pid, "no"))
    assert seen == []  # 1-1 of three: the third member decides
    tally = await service.submit_ballot(pid, ballot(members[2], pid))  # the deciding ballot closes it
    assert tally.outcome == "passed"
    kinds = [r.kind for r in await catalog.gov_entries()]
    assert kinds == ["genesis", "proposal", "ballot", "ballot", "ballot", "tally", "enactment"]
    assert seen == [(service.policy, 7)]  # called once, after the enactment was stored
    assert service.policy.accept_licences == ("CC0-1.0",)
    info = service.policy_info()
    assert info["version"] == 1 and info["enacted_at"] is not None and "CC0-1.0" in info["toml"]
    assert audit(await stored(catalog)).ok
    metrics = service.ctx.metrics.render().decode()
    assert 'communs_governance_events_total{kind="enactment"} 1.0' in metrics
    await service.stop()


async def test_refusals_carry_the_status_that_fits_and_store_nothing(
        root: Path, node_key: keys.SigningKey, catalog: Catalog, members: list[keys.SigningKey]) -> None:
    service = await started(root, node_key, catalog)
    outsider = keys.SigningKey.generate()
    p1 = (await service.submit_proposal(proposal(service, members[0]))).id
    p2 = (await service.submit_proposal(proposal(service, members[1]))).id
    before = len(await catalog.gov_entries())
    cases: list[tuple[Any, int, str]] = [
        (service.submit_ballot(p1, ballot(outsider, p1)), 403, "is not a member of the roster"),
        (service.submit_ballot(p2, ballot(members[0], p1)), 409, "not"),
        (service.submit_ballot(b"\x01" * 32, ballot(members[0], p1)), 404, "unknown proposal"),
        (service.submit_ballot(p1, b"\x80"), 400, "the ballot record is not valid"),
        (service.submit_proposal(proposal(service, outsider)), 403, "is not a member of the roster"),
        (service.submit_proposal(proposal(service, members[0], kind="member-add",
                                          body={"key": members[1].public, "name": "twice"})),
         409, "already on the roster"),
    ]
    for coro, status, phrase in cases:
        with pytest.raises(Refused) as caught:
            await coro
        assert caught.value.status == status and phrase in str(caught.value), str(caught.value)
    assert len(await catalog.gov_entries()) == before
    assert 'communs_governance_events_total{kind="rejected"} 6.0' in service.ctx.metrics.render().decode()
    await service.stop()


async def test_the_timer_closes_at_the_deadline_even_one_submitted_later_and_sooner(
        root: Path, node_key: keys.SigningKey, catalog: Catalog, members: list[keys.SigningKey]) -> None:
    service = await started(root, node_key, catalog)
    late = (await service.submit_proposal(proposal(service, members[0], closes_in=3600))).id
    # the timer sleeps until `late`; a sooner proposal must wake it
    soon = (await service.submit_proposal(proposal(service, members[0], kind="quota",
                                                   body={"storage_quota_bytes": 10}, closes_in=1))).id
    await service.submit_ballot(soon, ballot(members[0], soon))
    await service.submit_ballot(soon, ballot(members[1], soon, "abstain"))  # not decided before the deadline
    enacted = asyncio.Event()

    async def hook(policy: Policy) -> None:
        enacted.set()

    service.on_policy_change.append(hook)
    await asyncio.wait_for(enacted.wait(), 5)  # the timer enacted it, and told the subscribers
    assert service.policy.storage_quota_bytes == 10
    assert service.ledger.proposals[late].tally is None
    assert [r.kind for r in await catalog.gov_entries()][-2:] == ["tally", "enactment"]
    await service.stop()


async def test_a_failed_store_leaves_memory_as_the_catalog_is(
        root: Path, node_key: keys.SigningKey, catalog: Catalog, members: list[keys.SigningKey]) -> None:
    class FailingOnce:
        def __init__(self, real: Catalog) -> None:
            self.real = real
            self.fail = False

        async def gov_entries(self) -> Any:
            return await self.real.gov_entries()

        async def gov_append_many(self, rows: Any) -> None:
            if self.fail:
                self.fail = False
                raise CatalogError("disk full")
            await self.real.gov_append_many(rows)

    flaky = FailingOnce(catalog)
    service = await started(root, node_key, flaky)
    flaky.fail = True
    with pytest.raises(CatalogError):
        await service.submit_proposal(proposal(service, members[0]))
    assert len(service.ledger.entries) == 1 and not service.ledger.proposals  # reloaded from the catalog
    await service.submit_proposal(proposal(service, members[0]))  # and it goes on from there
    assert [r.kind for r in await catalog.gov_entries()] == ["genesis", "proposal"]
    await service.stop()


async def test_gov_append_many_is_all_or_nothing(root: Path, node_key: keys.SigningKey, catalog: Catalog,
                                                 members: list[keys.SigningKey]) -> None:
    from communs.governance.records import Roster

    ledger = Ledger.found(node_key, Roster.of((m.public, f"m{i}") for i, m in enumerate(members)), 100)
    ledger.submit_proposal(Proposal.create(members[0], kind="policy", body=POLICY, roster=ledger.current.roster.hash,
                                           opens=100, closes=200, nonce=os.urandom(16)).encode(), 101)
    rows = [(e.seq, e.hash, e.prev, e.kind, e.encode(), e.at) for e in ledger.drain()]
    broken = [rows[0], (5, *rows[1][1:])]
    with pytest.raises(CatalogError, match="does not follow"):
        await catalog.gov_append_many(broken)
    assert await catalog.gov_entries() == []
    await catalog.gov_append_many(rows)
    assert await stored(catalog) == [r[4] for r in rows]
