"""Issue 12 item 11: `communs publish` whose connection breaks asks again with the same Idempotency-Key.

The node side (a repeated key returns the first result) is tested on a real node in test_crash_consistency.
Here the CLI runs as a real subprocess against a real HTTP server on 127.0.0.1 that drops the first
connection without answering, as a node does when the connection closes after the publish committed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest


def _serve(sock: socket.socket, keys: list[str], answer: dict[str, object]) -> None:
    """Accept two POSTs: close the first without a response, answer the second with 201."""
    for n in range(2):
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in head.decode().split("\r\n")[1:])}
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                body += conn.recv(65536)
            keys.append(headers.get("idempotency-key", ""))
            if n == 0:
                conn.shutdown(socket.SHUT_RDWR)  # the connection breaks: no answer at all
                continue
            payload = json.dumps(answer).encode()
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(payload)).encode() + b"\r\nConnection: close\r\n\r\n" + payload)


@pytest.mark.slow
def test_cli_retries_a_broken_publish_with_the_same_key(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2)
    port = sock.getsockname()[1]
    answer = {"id": "bafkr4iexample", "dataset": "bafkr4idataset", "version": 1, "job": 1}
    keys: list[str] = []
    server = threading.Thread(target=_serve, args=(sock, keys, answer), daemon=True)
    server.start()
    data = tmp_path / "node"
    data.mkdir()
    (data / "config.toml").write_text("")
    (data / "admin.token").write_text("token\n")
    (data / "node.json").write_text(json.dumps({"pid": os.getpid(), "admin_url": f"http://127.0.0.1:{port}"}))
    src = tmp_path / "file.bin"
    src.write_bytes(b"x")
    try:
        r = subprocess.run([sys.executable, "-m", "communs.node.cli", "publish", str(src), "--title", "t",
                            "--licence", "CC0-1.0", "--json", "--data", str(data)],
                           capture_output=True, text=True, timeout=60)
        server.join(30)
    finally:
        sock.close()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == answer["id"]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
