#!/usr/bin/env python3
"""Dashboard benchmark (issue 17): time to first render of the overview with 10,000 datasets known, and
the CPU an open dashboard costs an idle node.

Two real nodes in this run: one whose catalog holds `--manifests` datasets (filled directly, as
scripts/bench/sync.py does, rather than by 10,000 publishes) and an empty one, the baseline. In Debian's
chromium (Playwright, /usr/bin/chromium), after signing in, the time is taken from navigating to `/` to
the overview showing the node, its dataset counts and its charts; the same on the datasets page (the
list of every dataset fetched, filtered and its first rows drawn). Then the full node's own CPU time
(/proc/PID/stat) is read over `--seconds` with no dashboard open and over `--seconds` with the overview
open and live. The last line is one JSON object with every figure.

    .venv/bin/python scripts/bench/dashboard.py [--manifests 10000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from communs.node.config import CATALOG_FILE  # noqa: E402
from communs.node.datadir import open_folder  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_sync", HERE / "sync.py")
assert _spec is not None and _spec.loader is not None
bench_sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_sync)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def until(page: Any, fn: str, timeout: float = 120.0) -> float:
    t0 = time.monotonic()
    while not page.evaluate(fn):
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the page never satisfied {fn}")
        time.sleep(0.005)
    return time.monotonic()


OVERVIEW_DONE = ("() => document.querySelector('#node dd.mono') && /own|complete/.test("
                 "document.querySelector('#disk')?.textContent || '') && "
                 "document.querySelectorAll('svg.chart').length === 2")
DATASETS_DONE = "() => /of \\d+ datasets/.test(document.querySelector('#ds-count')?.textContent || '')"


def render_times(browser: Any, info: dict[str, Any], token: str, runs: int) -> tuple[list[float], list[float]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    base = str(info["admin_url"])
    page.goto(base + "/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    overview, datasets = [], []
    for i in range(runs):
        t0 = time.monotonic()
        page.goto(f"{base}/?load={i}#/overview")  # a new query: a full page load, not a change of hash
        overview.append(until(page, OVERVIEW_DONE) - t0)
        t0 = time.monotonic()
        page.goto(f"{base}/?load={i}#/datasets")
        datasets.append(until(page, DATASETS_DONE) - t0)
    ctx.close()
    return overview, datasets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifests", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=20.0, help="each CPU measurement window")
    ap.add_argument("--runs", type=int, default=5, help="page loads per figure (the median is printed)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="communs-dash-bench-") as tmp:
        base = Path(tmp)
        full, empty = base / "full", base / "empty"
        for d in (full, empty):
            bench_sync.run("init", "--data", str(d), "--name", d.name, "--listen", "/ip4/127.0.0.1/tcp/0",
                           "--admin", "127.0.0.1:0")
        asyncio.run(bench_sync.fill(full / CATALOG_FILE, open_folder(full).node_key, args.manifests, 5, 3))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            p_full, info_full = bench_sync.start(full, base / "full.log")
            procs.append(p_full)
            p_empty, info_empty = bench_sync.start(empty, base / "empty.log")
            procs.append(p_empty)
            time.sleep(10)  # let both settle (first catalog reads, governance start, start-up checks)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                ov_e, ds_e = render_times(browser, info_empty, (empty / "admin.token").read_text().strip(), args.runs)
                ov_f, ds_f = render_times(browser, info_full, (full / "admin.token").read_text().strip(), args.runs)
                # CPU of the idle full node: first with no dashboard, then with the overview open and live
                c0 = cpu_seconds(p_full.pid)
                time.sleep(args.seconds)
                idle = (cpu_seconds(p_full.pid) - c0) / args.seconds
                ctx = browser.new_context()
                page = ctx.new_page()
                page.goto(str(info_full["admin_url"]) + "/login")
                page.fill("#token", (full / "admin.token").read_text().strip())
                page.click("button[type=submit]")
                until(page, OVERVIEW_DONE)
                time.sleep(2)
                c0 = cpu_seconds(p_full.pid)
                time.sleep(args.seconds)
                open_ = (cpu_seconds(p_full.pid) - c0) / args.seconds
                ctx.close()
                browser.close()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
    med = statistics.median
    out = {
        "manifests": args.manifests,
        "overview_first_render_s": round(med(ov_f), 3), "overview_first_render_empty_s": round(med(ov_e), 3),
        "overview_ratio": round(med(ov_f) / med(ov_e), 2),
        "datasets_page_s": round(med(ds_f), 3), "datasets_page_empty_s": round(med(ds_e), 3),
        "datasets_ratio": round(med(ds_f) / med(ds_e), 2),
        "idle_cpu_pct": round(100 * idle, 2), "idle_cpu_pct_dashboard_open": round(100 * open_, 2),
        "dashboard_cpu_pct": round(100 * (open_ - idle), 2),
    }
    print(f"overview, first render: {out['overview_first_render_s']} s with {args.manifests} datasets, "
          f"{out['overview_first_render_empty_s']} s empty (x{out['overview_ratio']})")
    print(f"datasets page: {out['datasets_page_s']} s with {args.manifests} datasets, "
          f"{out['datasets_page_empty_s']} s empty (x{out['datasets_ratio']})")
    print(f"idle node CPU: {out['idle_cpu_pct']} % of a core without a dashboard, "
          f"{out['idle_cpu_pct_dashboard_open']} % with one open")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
