"""Issue 14: the js-libp2p reference peer lists a node's proposals over /communs/governance/1.

The request is written byte by byte from protocol/README.md 5.1 and 5.6 (not with our encoder): a varint
length, then the msgpack map {t: "list"}. The answer is read with the msgpack library alone and checked
against the fields the specification lists, and the proposal record inside against its signature.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import msgpack
import pytest
from communs.governance.records import Proposal

from tests.interop.jspeer import JsPeer
from tests.nodes import NodeProc, cli

pytestmark = pytest.mark.interop

LIST_REQUEST = "08" + "81" + "a174" + "a46c697374"  # frame of 8 bytes: {"t": "list"}


def test_js_peer_lists_proposals(tmp_path: Path, js_peer_dir: Path, nodes: Any) -> None:
    coop = NodeProc.init(tmp_path, "coop")
    nodes.append(coop)
    coop.start()
    rules = tmp_path / "rules.toml"
    rules.write_text('accept_licences = ["CC0-1.0"]\n')
    made = json.loads(cli(coop.data, "propose", "--key", str(coop.data / "operator.key"), "--kind", "policy",
                          "--file", str(rules), "--closes-in", "1h", "--json").stdout)
    js = JsPeer(js_peer_dir, "probe", "--no-dht")
    try:
        js.ask("dial", coop.addr, "dial")
        got = js.ask("echo", f"{coop.peer_id} /communs/governance/1 {LIST_REQUEST}", "echo")
        assert got["protocol"] == "/communs/governance/1", got
        reply = bytes.fromhex(got["reply_hex"])
        length, pos = 0, 0
        for shift in range(0, 28, 7):  # the varint length prefix
            byte = reply[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        assert len(reply) == pos + length, "exactly one answer frame, then the end of the stream"
        answer = msgpack.unpackb(reply[pos:], raw=False)
        assert answer["t"] == "proposals" and set(answer) == {"t", "items", "now"}
        assert isinstance(answer["now"], int) and abs(answer["now"] - int(os.path.getmtime(rules))) < 3600
        (item,) = answer["items"]
        assert set(item) == {"id", "kind", "summary", "opens", "closes", "tally", "status", "record"}
        assert item["kind"] == "policy" and item["status"] == "open"
        proposal = Proposal.decode(item["record"])  # its signature verifies
        assert proposal.cid == made["id"] and proposal.id == item["id"]
    finally:
        js.close()
