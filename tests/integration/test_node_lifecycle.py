"""Issue 2: real `communs run` processes, connection, clean stop, and every bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path

from tests.nodes import NodeProc, cli, cli_json, wait_for


def test_two_nodes_connect_and_stop_cleanly(make_node) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    b = make_node("b", "--bootstrap", "PLACEHOLDER", start=False) if False else None
    assert b is None
    b = NodeProc.init(a.data.parent, "b", "--bootstrap", a.addr)
    b.start()
    try:
        t0 = time.monotonic()
        wait_for(lambda: any(p["peer_id"] == a.peer_id for p in cli_json(b.data, "peers")), 10,
                 what="b to list a")
        wait_for(lambda: any(p["peer_id"] == b.peer_id for p in cli_json(a.data, "peers")), 10,
                 what="a to list b")
        assert time.monotonic() - t0 < 10
        status = cli_json(a.data, "status")
        assert status["peer_id"] == a.peer_id
        assert status["listen_addrs"] == a.info["listen_addrs"]
        assert all(addr.endswith("/p2p/" + a.peer_id) for addr in a.info["listen_addrs"])
        assert a.info["admin_url"].startswith("http://127.0.0.1:")
        assert a.info["pid"] == a.proc.pid
    finally:
        t0 = time.monotonic()
        code_b = b.stop()
        code_a = a.stop()
    assert code_a == 0 and code_b == 0
    assert not (a.data / "node.json").exists() and not (b.data / "node.json").exists()
    for n in (a, b):
        log = n.log()
        assert "Traceback" not in log, log
        assert "stopped cleanly" in log


def test_init_files_and_modes(tmp_path: Path) -> None:
    data = tmp_path / "n"
    out = cli_json(data, "init")
    for name in ("node.key", "admin.token", "operator.key"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert (data / "config.toml").is_file()
    assert out["peer_id"].startswith("12D3KooW")
    assert len(out["founders"]) == 1
    text = (data / "config.toml").read_text()
    assert '"/ip4/0.0.0.0/tcp/7470"' in text and '"127.0.0.1:7471"' in text and 'federation = "communs"' in text


def test_init_refuses_existing_node(tmp_path: Path) -> None:
    data = tmp_path / "n"
    cli(data, "init")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    proc = cli(data, "init", check=False)
    assert proc.returncode != 0
    assert "already holds a Communs node" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


def test_init_with_founders(tmp_path: Path) -> None:
    for who in ("alice", "bob"):
        cli(tmp_path, "member", "keygen", "--out", str(tmp_path / f"{who}.key"))
    data = tmp_path / "n"
    out = cli_json(data, "init", "--founder", str(tmp_path / "alice.key.pub"),
                   "--founder", str(tmp_path / "bob.key.pub"))
    assert [f["name"] for f in out["founders"]] == ["alice", "bob"]
    assert not (data / "operator.key").exists()


def _one_sentence_error(proc) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    # log lines may precede it (a node that got as far as logging), but the last line is the sentence
    assert proc.stderr.strip().splitlines()[-1].startswith("communs: error: "), proc.stderr


def test_bad_inputs_give_one_sentence(tmp_path: Path) -> None:
    # run on a missing folder
    _one_sentence_error(cli(tmp_path / "missing", "run", check=False))
    # bad multiaddr, bad admin address, bad bootstrap
    _one_sentence_error(cli(tmp_path / "x1", "init", "--listen", "/ip4/nonsense/tcp/1", check=False))
    _one_sentence_error(cli(tmp_path / "x2", "init", "--admin", "localhost", check=False))
    _one_sentence_error(cli(tmp_path / "x3", "init", "--bootstrap", "/ip4/127.0.0.1/tcp/1", check=False))
    _one_sentence_error(cli(tmp_path / "x4", "init", "--admin", "0.0.0.0:7471", check=False))
    assert not (tmp_path / "x1").exists() or not (tmp_path / "x1" / "config.toml").exists()
    # corrupt config value
    data = tmp_path / "n"
    cli(data, "init", "--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0")
    cfg = data / "config.toml"
    good = cfg.read_text()
    cfg.write_text(good.replace('format = "text"', "format = 3"))
    proc = cli(data, "run", check=False)
    _one_sentence_error(proc)
    assert "log.format" in proc.stderr
    cfg.write_text("this is [not toml")
    _one_sentence_error(cli(data, "run", check=False))
    cfg.write_text(good)
    # unreadable / damaged key file
    key = data / "node.key"
    saved = key.read_bytes()
    key.write_text("garbage\n")
    proc = cli(data, "run", check=False)
    _one_sentence_error(proc)
    assert "node key" in proc.stderr
    key.write_bytes(saved)
    # status with no running node
    proc = cli(data, "status", check=False)
    _one_sentence_error(proc)
    assert "not running" in proc.stderr


def test_port_in_use(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        data = tmp_path / "p2p"
        cli(data, "init", "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--admin", "127.0.0.1:0")
        proc = cli(data, "run", check=False, timeout=30)
        _one_sentence_error(proc)
        assert str(port) in proc.stderr
        data2 = tmp_path / "admin"
        cli(data2, "init", "--listen", "/ip4/127.0.0.1/tcp/0", "--admin", f"127.0.0.1:{port}")
        proc = cli(data2, "run", check=False, timeout=30)
        _one_sentence_error(proc)
        assert "admin endpoint" in proc.stderr
        assert not (data2 / "node.json").exists()
    finally:
        sock.close()


def test_second_run_on_same_folder_refused(make_node) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    proc = cli(a.data, "run", check=False, timeout=30)
    _one_sentence_error(proc)
    assert "already running" in proc.stderr
    assert (a.data / "node.json").exists()  # the running node's file is untouched
    assert a.stop() == 0


def test_admin_auth(make_node) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    status, body = a.api("GET", "/healthz", token="")
    assert (status, body) == (200, {"ok": True})
    for path in ("/api/v1/status", "/api/v1/peers", "/metrics", "/api/v1/openapi.json"):
        status, body = a.api("GET", path, token="")
        assert status == 401 and "token" in body["error"], (path, body)
        status, body = a.api("GET", path, token="wrong-token-wrong-token")
        assert status == 401, path
    status, body = a.api("GET", "/api/v1/status")
    assert status == 200 and body["peer_id"] == a.peer_id
    assert {"peer_id", "listen_addrs", "version", "uptime_s"} <= set(body)
    status, body = a.api("GET", "/api/v1/nope")
    assert status == 404 and "error" in body
    assert a.token not in a.log()


def test_sigint_stops_within_5s(make_node) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    t0 = time.monotonic()
    assert a.stop(signal.SIGINT) == 0
    assert time.monotonic() - t0 < 5
    assert not (a.data / "node.json").exists()


def test_bootstrap_retries_until_peer_appears(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    addr, pid = a.addr, a.peer_id
    port = addr.split("/tcp/")[1].split("/")[0]
    assert a.stop() == 0
    # b starts while a is down, then a comes back on the same port
    cfg = a.data / "config.toml"
    cfg.write_text(cfg.read_text().replace("/ip4/127.0.0.1/tcp/0", f"/ip4/127.0.0.1/tcp/{port}"))
    b = NodeProc.init(tmp_path, "b", "--bootstrap", addr)
    nodes.append(b)
    b.start()
    time.sleep(1.5)
    a.start()
    assert a.peer_id == pid
    wait_for(lambda: any(p["peer_id"] == pid for p in b.get("/api/v1/peers")), 20, what="b to reconnect")
    log = b.log()
    assert log.count("unreachable") == 1, log  # once per peer, not per attempt
    assert "Failed to open TCP stream" not in log and " ERROR " not in log, log


def test_node_json_removed_and_env_clean(make_node) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    info = json.loads((a.data / "node.json").read_text())
    assert set(info) == {"pid", "peer_id", "listen_addrs", "admin_url"}
    os.kill(info["pid"], signal.SIGTERM)
    wait_for(lambda: not (a.data / "node.json").exists(), 5, what="node.json removal")
