from __future__ import annotations

from communs.node.http.public.limits import DownloadSlots, RateLimiter


def test_rate_allows_a_burst_then_refills() -> None:
    r = RateLimiter(60, burst=3)
    assert [r.allow("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = r.allow("a", 0.0)
    assert 0.9 < wait <= 1.0
    assert r.allow("b", 0.0) == 0.0  # another address is not affected
    assert r.allow("a", 1.01) == 0.0


def test_rate_table_is_bounded() -> None:
    r = RateLimiter(60, max_clients=100)
    for i in range(1000):
        r.allow(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(r._buckets) == 100


def test_download_slots_per_client_and_total() -> None:
    s = DownloadSlots(per_client=2, total=3)
    assert s.take("a") is None and s.take("a") is None
    assert "at most 2" in (s.take("a") or "")
    assert s.take("b") is None
    assert "as many downloads" in (s.take("c") or "")
    s.give("a")
    assert s.take("c") is None
    for c in ("a", "b", "c"):
        s.give(c)
    assert s.running == {}
