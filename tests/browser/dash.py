"""Helpers for the dashboard's browser tests: sign in, run axe, take screenshots."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.nodes import NodeProc

SCREENSHOTS = Path(__file__).parent.parent.parent / "docs" / "screenshots"


def sign_in(page: Any, node: NodeProc, token: str | None = None) -> Any:
    """Open the node's dashboard, sign in with the form, return the sign-in POST's response."""
    page.goto(node.info["admin_url"] + "/")
    page.wait_for_url("**/login")
    page.fill("#token", node.token if token is None else token)
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as resp:
        page.click("button[type=submit]")
    return resp.value


def wait_js(page: Any, fn: str, arg: Any = None, timeout: float = 30.0, what: str = "the page") -> Any:
    """Poll a JS function in the page until it returns something truthy (Playwright's wait_for_function
    would need eval, which the dashboard's CSP rightly forbids)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = page.evaluate(fn, arg)
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def wait_live(page: Any) -> None:
    wait_js(page, "() => document.getElementById('live')?.textContent === 'live'", what="the live stream")


def changes(seen: list[Any]) -> list[Any]:
    """What a page recorded, consecutive repeats left out: for the message of a failed progress check."""
    return [x for i, x in enumerate(seen) if i == 0 or x != seen[i - 1]]


def axe_findings(page: Any, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    # the page's CSP forbids inline scripts (add_script_tag would be refused, as it should be): evaluate
    # axe through the DevTools protocol instead, which the page's policy does not govern
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source + "\n;0")
    result = page.evaluate("async () => JSON.stringify((await axe.run(document)).violations)")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["html"][:200] for n in v["nodes"][:3]]}
            for v in json.loads(result) if v["impact"] in ("serious", "critical")]


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
