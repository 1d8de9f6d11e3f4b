"""node/exchange/bandwidth.py: the token bucket (pure, clocked by the test) and `[limits]` in config.toml."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from communs.node.config import Config, ConfigError, load_config
from communs.node.exchange.bandwidth import BURST_S, MIN_BURST, Bandwidth, LimitError, TokenBucket, check_rate

MB = 1_000_000


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket.full(0, now=0.0)
    assert all(bucket.take(8 << 20, now=0.0) == 0.0 for _ in range(100))


def test_burst_then_the_rate_holds() -> None:
    bucket = TokenBucket.full(10 * MB, now=0.0)
    assert bucket.take(int(10 * MB * BURST_S), now=0.0) == 0.0  # the full bucket is spent at once
    assert bucket.take(MB, now=0.0) == pytest.approx(0.1)  # then each MB costs 0.1 s
    assert bucket.take(MB, now=0.0) == pytest.approx(0.2)  # concurrent takers queue behind the debt


def test_long_run_rate_is_the_limit() -> None:
    """Whatever the chunk sizes, n bytes sent as fast as allowed take n / rate seconds (plus the burst)."""
    rate = 10 * MB
    bucket = TokenBucket.full(rate, now=0.0)
    now, sent = 0.0, 0
    sizes = [1 << 20, 8 << 20, 12345, 3 << 20]
    while now < 30.0:
        size = sizes[sent % len(sizes)]
        now += bucket.take(size, now)
        sent += size
    assert sent / now == pytest.approx(rate, rel=0.02)


def test_chunk_larger_than_the_burst_is_paid_by_waiting() -> None:
    bucket = TokenBucket.full(100_000, now=0.0)
    assert bucket.capacity == MIN_BURST
    assert bucket.take(8 << 20, now=0.0) == pytest.approx(((8 << 20) - MIN_BURST) / 100_000)


def test_idle_refills_only_up_to_the_burst() -> None:
    bucket = TokenBucket.full(MB, now=0.0)
    bucket.take(10 * MB, now=0.0)
    assert bucket.take(0, now=1000.0) == 0.0
    bucket.take(1, now=1000.0)
    assert bucket.tokens == pytest.approx(bucket.capacity - 1)


def test_rate_change_keeps_the_debt_and_unlimited_to_limited_starts_full() -> None:
    bucket = TokenBucket.full(MB, now=0.0)
    bucket.take(MB + int(MB * BURST_S), now=0.0)  # 1 MB owed
    bucket.set_rate(2 * MB, now=0.0)
    assert bucket.take(0, now=0.0) == 0.0
    assert bucket.take(1, now=0.0) == pytest.approx((MB + 1) / (2 * MB))
    free = TokenBucket.full(0, now=0.0)
    free.set_rate(MB, now=5.0)
    assert free.take(int(MB * BURST_S), now=5.0) == 0.0


@pytest.mark.parametrize("value", [-1, 1.5, True, "10", None, (1 << 40) + 1])
def test_bad_rates_are_refused(value: object) -> None:
    with pytest.raises(LimitError, match="upload_bytes_per_s must"):
        check_rate(value, "upload_bytes_per_s")


def test_set_limits_checks_both_before_changing_either() -> None:
    bw = Bandwidth(upload_bytes_per_s=5, download_bytes_per_s=7)
    with pytest.raises(LimitError):
        bw.set_limits(upload_bytes_per_s=100, download_bytes_per_s=-1)
    assert bw.limits() == {"upload_bytes_per_s": 5, "download_bytes_per_s": 7}
    bw.set_limits(download_bytes_per_s=0)
    assert bw.limits() == {"upload_bytes_per_s": 5, "download_bytes_per_s": 0}


def test_waits_on_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    slept: list[float] = []
    bw = Bandwidth(upload_bytes_per_s=MB, clock=lambda: now[0])
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)
        await real_sleep(0)

    async def go() -> None:
        await bw.upload(int(MB * BURST_S))
        await bw.upload(MB)
        await bw.download(100 * MB)  # no download limit

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    asyncio.run(go())
    assert slept == [pytest.approx(1.0)]


def folder(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "config.toml").write_text(Config().to_toml() + extra, "utf-8")
    return tmp_path


def test_config_limits(tmp_path: Path) -> None:
    cfg = load_config(folder(tmp_path, ""))
    assert (cfg.limit_upload_bytes_per_s, cfg.limit_download_bytes_per_s) == (0, 0)
    cfg = load_config(folder(tmp_path, "\n[limits]\nupload_bytes_per_s = 1_000_000\ndownload_bytes_per_s = 5\n"))
    assert (cfg.limit_upload_bytes_per_s, cfg.limit_download_bytes_per_s) == (1_000_000, 5)


@pytest.mark.parametrize(("line", "message"), [
    ("upload_bytes_per_s = -1", "limits.upload_bytes_per_s must be from 0"),
    ("download_bytes_per_s = 2.5", "limits.download_bytes_per_s has the wrong type"),
    ("upload = 3", "unknown key limits.upload"),
])
def test_config_bad_limits(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(folder(tmp_path, f"\n[limits]\n{line}\n"))
