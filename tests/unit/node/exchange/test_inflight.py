"""Manifests being fetched here: a waiter is released when the fetch ends, and waits for nothing else."""

from __future__ import annotations

import asyncio

import pytest
from communs.node.exchange import inflight as inflight_mod
from communs.node.exchange.inflight import Inflight


async def test_a_waiter_is_released_when_the_manifest_is_resolved() -> None:
    inflight = Inflight()
    assert not await inflight.wait(b"m" * 32)  # nothing expected: no wait at all
    inflight.expect(b"m" * 32)
    waiter = asyncio.ensure_future(inflight.wait(b"m" * 32))
    await asyncio.sleep(0)
    assert not waiter.done()
    inflight.resolve(b"m" * 32)
    assert await asyncio.wait_for(waiter, 1.0)
    assert not await inflight.wait(b"m" * 32)  # resolved: forgotten


async def test_a_waiter_gives_up_after_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inflight_mod, "INFLIGHT_WAIT", 0.05)
    inflight = Inflight()
    inflight.expect(b"x" * 32)
    assert not await inflight.wait(b"x" * 32)  # nobody resolved it within the wait


async def test_pruning_releases_the_waiters_of_an_entry_nobody_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    inflight = Inflight()
    inflight.expect(b"x" * 32)
    waiter = asyncio.ensure_future(inflight.wait(b"x" * 32))
    await asyncio.sleep(0)
    inflight.prune()  # younger than INFLIGHT_MAX_AGE: kept
    await asyncio.sleep(0)
    assert not waiter.done()
    monkeypatch.setattr(inflight_mod, "INFLIGHT_MAX_AGE", -1.0)
    inflight.prune()
    assert await asyncio.wait_for(waiter, 1.0)  # released at once, well before INFLIGHT_WAIT
    assert not await asyncio.wait_for(inflight.wait(b"x" * 32), 0.5)  # forgotten: no wait
