"""`communs run` for supervisors: sd_notify readiness under systemd, and `--bootstrap-from` for compose files."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from tests.nodes import COMMUNS, NodeProc, wait_for


def test_node_tells_systemd_when_ready_and_when_stopping(  # type: ignore[no-untyped-def]
        tmp_path: Path, nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        node = NodeProc.init(tmp_path, "a")
        nodes.append(node)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        node.start(wait=False)
        ready = sock.recv(4096).decode()
        # READY=1 comes once node.json is written and the admin API answers
        assert ready.startswith("READY=1\n") and "STATUS=peer id 12D3KooW" in ready
        node.wait_ready(5)
        assert node.peer_id in ready and node.info["admin_url"] in ready
        status, body = node.api("GET", "/healthz", token="")
        assert status == 200 and body == {"ok": True}
        assert node.stop() == 0
        assert sock.recv(4096) == b"STOPPING=1"


def start_run(data: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*COMMUNS, "run", "--data", str(data), "--init-if-missing", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_bootstrap_from_completes_the_address_with_the_peer_id_once_the_file_appears(
        tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    shared = tmp_path / "shared" / "node.json"  # not there yet: node1 is still starting
    b = tmp_path / "b"
    proc = start_run(b, "--bootstrap", "/dns4/node1/tcp/7470", "--bootstrap", "/ip4/192.0.2.1/tcp/1/p2p/"
                     "12D3KooWAJRBGAJjkV6X7kZAFRuFpLj4qAUb9bK3AzemPoS491sy", "--bootstrap-from", str(shared))
    try:
        time.sleep(1.5)
        assert proc.poll() is None and not (b / "config.toml").exists(), "it must wait for the file"
        a.start()
        shared.parent.mkdir()
        shared.write_text((a.data / "node.json").read_text())
        wait_for(lambda: (b / "config.toml").exists(), 20, what="b to be initialised")
    finally:
        # only the init matters here; the node itself would listen on the default port 7470
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    cfg = tomllib.loads((b / "config.toml").read_text())
    assert cfg["node"]["bootstrap"] == [f"/dns4/node1/tcp/7470/p2p/{a.peer_id}",
                                        "/ip4/192.0.2.1/tcp/1/p2p/12D3KooWAJRBGAJjkV6X7kZAFRuFpLj4qAUb9bK3AzemPoS491sy"]
    assert "waiting for" in err


def test_bootstrap_from_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"peer_id": "not-a-peer-id"}))
    cases = [
        (("--bootstrap-from", str(bad)), "none was given"),
        (("--bootstrap", "/dns4/node1/tcp/7470", "--bootstrap-from", str(bad)), "not a node.json naming a valid"),
    ]
    for i, (args, sentence) in enumerate(cases):
        data = tmp_path / f"n{i}"
        proc = start_run(data, *args)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1, err
        assert sentence in err and "Traceback" not in err, err
        assert not (data / "config.toml").exists()


def test_run_init_if_missing_takes_the_options_of_init(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = start_run(data, "--name", "river", "--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0",
                     "--federation", "fed-x", "--no-dht", "--mdns")
    try:
        wait_for(lambda: (data / "node.json").exists(), 30, what="the node to start")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    node = tomllib.loads((data / "config.toml").read_text())["node"]
    admin = tomllib.loads((data / "config.toml").read_text())["admin"]
    assert (node["name"], node["listen"], node["federation"], node["dht"], node["mdns"]) == \
        ("river", ["/ip4/127.0.0.1/tcp/0"], "fed-x", False, True)
    assert admin["listen"] == "127.0.0.1:0"


def test_a_node_without_a_name_is_named_after_its_peer_id_not_its_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.run([*COMMUNS, "init", "--data", str(data), "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    peer = json.loads(proc.stdout)["peer_id"]
    name = tomllib.loads((data / "config.toml").read_text())["node"]["name"]
    assert name == f"communs-{peer[-8:]}"
