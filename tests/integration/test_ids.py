"""Issue 18, "ids everywhere": a dataset id, a manifest id and a unique prefix of either work in every
command and route that takes an id; an ambiguous prefix names the candidates."""

from __future__ import annotations

from pathlib import Path

from tests.nodes import cli, cli_json


def test_dataset_ids_manifest_ids_and_prefixes_are_accepted_everywhere(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("one\n")
    v1 = cli_json(a.data, "publish", str(src), "--title", "Ids", "--licence", "CC0-1.0")
    (src / "a.txt").write_text("two\n")
    # --dataset takes a prefix of one of the dataset's manifest ids, as the status line shows it
    v2 = cli_json(a.data, "publish", str(src), "--title", "Ids", "--licence", "CC0-1.0",
                  "--dataset", v1["id"][:16] + "\u2026")
    assert v2["dataset"] == v1["dataset"] and v2["version"] == 2

    # get DATASET_ID takes the latest complete version; the text names both ids
    out = tmp_path / "latest"
    proc = cli(a.data, "get", v1["dataset"], str(out))
    assert (out / "a.txt").read_text() == "two\n"
    assert v2["id"] in proc.stdout and v1["dataset"] in proc.stdout
    got = cli_json(a.data, "get", v1["id"][:12], str(tmp_path / "old"))
    assert (got["id"], got["dataset"], got["version"]) == (v1["id"], v1["dataset"], 1)
    assert (tmp_path / "old" / "a.txt").read_text() == "one\n"

    # the API: a dataset id or prefix shows the latest version
    assert a.get(f"/api/v1/datasets/{v1['dataset']}")["id"] == v2["id"]
    assert a.get(f"/api/v1/datasets/{v1['dataset'][:20]}")["id"] == v2["id"]
    assert a.get(f"/api/v1/datasets/{v1['id'][:20]}")["id"] == v1["id"]
    status, body = a.api("GET", "/api/v1/datasets/bafkr4i")
    assert status == 400 and "at least 8 characters" in body["error"]

    # the listing shows the dataset id beside each manifest id
    listing = cli(a.data, "datasets").stdout
    assert f"dataset {v1['dataset']}" in listing

    # 10 ids share 'bafkr4i' and one of 8 letters: some 8-character prefix is ambiguous, and the error says so
    for i in range(3):
        (src / "a.txt").write_text(f"more {i}\n")
        cli_json(a.data, "publish", str(src), "--title", f"More {i}", "--licence", "CC0-1.0")
    rows = a.get("/api/v1/datasets")
    texts = [r["id"] for r in rows] + list({r["dataset"] for r in rows})
    shared = next(t[:8] for t in texts if sum(u.startswith(t[:8]) for u in texts) > 1)
    status, body = a.api("GET", f"/api/v1/datasets/{shared}")
    assert status == 409 and "ambiguous" in body["error"]
    named = [t for t in texts if t.startswith(shared)]
    assert all(t in body["error"] for t in named)
    refused = cli(a.data, "get", shared, str(tmp_path / "amb"), check=False)
    assert refused.returncode != 0 and "ambiguous" in refused.stderr and not (tmp_path / "amb").exists()
