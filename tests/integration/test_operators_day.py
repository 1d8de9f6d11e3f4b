"""Issue 18, an operator's day across two nodes: a real folder (executables, empty folders, a dangling link,
names that differ only by case) published, replicated and got back as it was on the other node; ids given
however the operator has them; the first node restarted on a new port and found again within 10 s.
(Interrupting a publish, retraction and kept versions belong to the dataset lifecycle's own tests.)"""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.test_folders import make_folder, tree
from tests.integration.test_replication import enact_policy, states
from tests.nodes import NodeProc, cli, cli_json, wait_for


def test_an_operators_day(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    b.start()
    wait_for(lambda: any(p["peer_id"] == a.peer_id for p in b.get("/api/v1/peers")), 30, what="b joins a")

    # morning: publish a real folder; every case collision is named in one go, then published anyway
    src = tmp_path / "src"
    make_folder(src)
    (src / "tools").mkdir()
    (src / "tools" / "build").write_text("#!/bin/sh\nmake\n")
    (src / "tools" / "build").chmod(0o755)
    first = cli(a.data, "publish", str(src), "--title", "Day", "--licence", "CC0-1.0", check=False)
    assert first.returncode != 0 and "README / readme" in first.stderr and "Notes / notes" in first.stderr
    assert "internal error" not in first.stderr
    v1 = cli_json(a.data, "publish", str(src), "--title", "Day", "--licence", "CC0-1.0", "--skip-case-collisions")
    assert "dangling" in {s["path"] for s in v1["skipped"]}

    # b's members want CC0: b replicates it, and `get` on b gives the folder back as it was
    enact_policy(b, ["CC0-1.0"], tmp_path)
    wait_for(lambda: states(b).get("Day") == "complete", 90, what="b to replicate the folder")
    out = tmp_path / "on-b"
    cli(b.data, "get", v1["dataset"][:14], str(out))  # a dataset id prefix, as typed by hand
    want = tree(src)
    for left_out in ("dangling", "notes", "notes/m.txt", "readme"):
        del want[left_out]
    assert tree(out) == want
    assert want["tools/build"][1] and want["bin/run.sh"][1] and not want["README"][1]
    assert want["empty/nested/deep"] == "folder" and want["also-empty"] == "folder"

    # afternoon: a restarts on another port (it has no bootstrap of its own: b knew only its old address)
    wait_for(lambda: (a.data / "peers.json").exists() and b.peer_id in (a.data / "peers.json").read_text(), 30,
             what="a to note b in its peer book")
    old = a.addr
    assert a.stop() == 0
    a.start()
    assert a.addr != old
    t0 = time.monotonic()
    wait_for(lambda: any(p["peer_id"] == a.peer_id for p in b.get("/api/v1/peers")), 10,
             what="b to see a again at its new address")
    assert time.monotonic() - t0 <= 10

    # evening: a new version reaches b; `get` by dataset id takes it once complete
    (src / "tools" / "build").write_text("#!/bin/sh\nmake all\n")
    v2 = cli_json(a.data, "publish", str(src), "--title", "Day", "--licence", "CC0-1.0", "--skip-case-collisions",
                  "--dataset", v1["id"][:16] + "\u2026")
    assert v2["version"] == 2 and v2["dataset"] == v1["dataset"]
    wait_for(lambda: any(d["id"] == v2["id"] and d["state"] == "complete" for d in b.get("/api/v1/datasets")), 90,
             what="b to replicate version 2")
    got = cli_json(b.data, "get", v1["dataset"], str(tmp_path / "v2-on-b"))
    assert got["id"] == v2["id"] and (tmp_path / "v2-on-b" / "tools" / "build").read_text().endswith("make all\n")
