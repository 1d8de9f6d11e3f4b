"""Browser tests of the operator dashboard: Debian's chromium driven by Playwright for Python.

Chromium is the system one (/usr/bin/chromium, which .ci/run installs with apt-get): `playwright install`
downloads browsers and is never used. axe-core comes from npm, installed with `npm ci` from this folder's
package-lock.json into a temporary folder once per session.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HERE = Path(__file__).parent
SCREENSHOTS = HERE.parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped on purpose: Playwright's sync API leaves its event loop marked as running in this
    thread while it is open, and pytest-asyncio then refuses to run any async test or fixture after it
    ("Runner.run() cannot be called from a running event loop"). Closing it at the end of the module gives
    the thread back to the rest of the suite."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: install Debian's chromium package (.ci/run does, as root)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is in the test extra: pip install -e .[test]")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def axe_source() -> Iterator[str]:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is absent: the accessibility checks need axe-core from npm (apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="communs-axe-") as tmp:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HERE / name, Path(tmp) / name)
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=tmp,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"npm ci failed: {proc.stderr[-2000:]}"
        yield (Path(tmp) / "node_modules" / "axe-core" / "axe.min.js").read_text()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    yield ctx
    ctx.close()
