"""Every decoder that takes bytes from the network or from disk, as fuzz targets.

Shared by the atheris harness (scripts/fuzz/run.py) and the suite's hypothesis fuzz tests
(tests/unit/test_fuzz_decoders.py), so both exercise the same entry points. A target is a function of
raw bytes and the exception classes that are its documented refusals; anything else escaping it is a
bug. Each has seeds: valid inputs that mutation starts from, so the fuzzer gets past the first checks.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from communs.governance import ledger as govlog
from communs.governance import licences, policy
from communs.governance.errors import GovernanceError
from communs.governance.records import Ballot, Genesis, Proposal, Roster
from communs.node.config import CONFIG_FILE, Config, ConfigError, load_config
from communs.protocol import encoding, ids, keys, wire
from communs.protocol.errors import DecodeError, RecordError
from communs.protocol.records import Announcement, FileEntry, Manifest

KEY = keys.SigningKey(bytes(range(32)))
MEMBER = keys.SigningKey(bytes([7]) * 32)
SIDES = ("request", "response")


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    errors: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]


def _text(data: bytes) -> str:
    """Text from bytes as a file reader would see it (invalid UTF-8 replaced, as errors='replace')."""
    return data.decode("utf-8", "replace")


# ---- seeds ----------------------------------------------------------------------------------------


@functools.cache
def _manifest() -> Manifest:
    files = [FileEntry.of("data/a.csv", [(ids.digest(b"a"), 10), (ids.digest(b"b"), 20)]),
             FileEntry.of("README.md", [(ids.digest(b"c"), 5)])]
    return Manifest.create(KEY, dataset=ids.digest(b"dataset"), version=1, prev=None, seq=1, log_prev=None,
                           title="Trees of the city", licence="CC-BY-4.0 OR ODbL-1.0", created=1_700_000_000,
                           files=files, description="every tree", keywords=("trees", "city"))


@functools.cache
def _ledger_entries() -> list[bytes]:
    roster = Roster.of([(MEMBER.public, "Ana")])
    ledger = govlog.Ledger.found(KEY, roster, at=50)
    rules = policy.Policy(accept_licences=("CC0-1.0",))
    proposal = Proposal.create(MEMBER, kind="policy", body=rules, roster=roster.hash, opens=100, closes=1000,
                               nonce=bytes(16))
    ledger.submit_proposal(proposal.encode(), 100)
    ledger.submit_ballot(Ballot.create(MEMBER, proposal=proposal.id, choice="yes", ts=110).encode(), 110)
    return [e.encode() for e in ledger.drain()]


def _governance_records() -> dict[str, bytes]:
    roster = Roster.of([(MEMBER.public, "Ana")])
    proposal = Proposal.create(MEMBER, kind="member-add", body={"key": KEY.public, "name": "Ben"},
                               roster=roster.hash, opens=100, closes=1000, nonce=bytes(16))
    return {
        "roster": roster.encode(),
        "proposal": proposal.encode(),
        "ballot": Ballot.create(MEMBER, proposal=proposal.id, choice="no", ts=120).encode(),
        "genesis": Genesis.create(KEY, roster).encode(),
    }


def _messages(protocol: str, side: str) -> list[wire.Message]:
    m = _manifest()
    d = [ids.digest(bytes([i])) for i in range(4)]
    if side == "request":
        return {
            wire.MANIFEST_PROTOCOL: [wire.ManifestGet((m.id, d[0]))],
            wire.CHUNKS_PROTOCOL: [wire.ChunksGet(tuple(d))],
            wire.SYNC_PROTOCOL: [wire.HeadsRequest(), wire.RangeRequest(KEY.public, 1, 10)],
        }[protocol]
    return {
        wire.MANIFEST_PROTOCOL: [wire.ManifestRecord(m.id, m.encode()),
                                 wire.ErrorAnswer("not-found", "no such manifest", d[1])],
        wire.CHUNKS_PROTOCOL: [wire.ErrorAnswer("busy", "later"), wire.End()],
        wire.SYNC_PROTOCOL: [wire.Heads(((KEY.public, 3),)), wire.Records((m.encode(),)), wire.End()],
    }[protocol]


def _payloads(protocol: str, side: str) -> list[bytes]:
    return [encoding.encode(msg.to_map()) for msg in _messages(protocol, side)]


def _stream(protocol: str, side: str) -> bytes:
    """What one direction of a stream carries: every message framed, a chunk with its body on chunks/1."""
    out = b""
    if (protocol, side) == (wire.CHUNKS_PROTOCOL, "response"):
        body = b"chunk body " * 20
        head, data = wire.chunk_frames(ids.digest(body), body)
        out = head + bytes(data)
    return out + b"".join(msg.encode() for msg in _messages(protocol, side))


_CONFIG_SEED = Config(name="fuzz", listen=["/ip4/127.0.0.1/tcp/0"], admin="127.0.0.1:0").to_toml()
_RULES_SEED = 'accept_licences = ["CC0-1.0", "CC-BY-4.0"]\nrefuse_licences = []\nmax_dataset_bytes = 10\n' \
              'trusted_publishers = "any"\nrefused_publishers = []\n'


# ---- runners --------------------------------------------------------------------------------------


def _reader(protocol: str, side: str, assemble: bool) -> Callable[[bytes], object]:
    def run(data: bytes) -> None:
        # the first byte picks how the stream is cut into reads, as a network would cut it
        step = 1 + (data[0] if data else 0) % 97
        reader = wire.FrameReader(protocol, side, assemble=assemble)  # type: ignore[arg-type]
        for i in range(1, len(data), step):
            reader.feed(data[i:i + step])
            while reader.next_event() is not None:
                pass
            assert reader.buffered <= reader.max_frame + wire.MAX_CHUNK_SIZE + step, "reader buffers too much"
        reader.close()

    return run


def _split_entries(data: bytes) -> list[bytes]:
    """Cut the input into stored log entries at a separator, as the catalog would hand them over."""
    return [part for part in data.split(b"\xff\xfe\xfd") if part] or [data]


_config_dir: list[Path] = []


def _load_config(data: bytes) -> Config:
    if not _config_dir:
        _config_dir.append(Path(tempfile.mkdtemp(prefix="communs-fuzz-config-")))
    folder = _config_dir[0]
    (folder / CONFIG_FILE).write_bytes(data)
    return load_config(folder)


def _evaluate(data: bytes) -> None:
    licence = _text(data)
    rules = policy.Policy(accept_licences=("CC0-1.0", "MIT"), refuse_licences=("GPL-3.0-only",))
    decision = policy.evaluate(rules, licence=licence, size=len(data), publisher_peer_id=keys.peer_id(KEY.public),
                               own=False)
    assert isinstance(decision.reason, str) and decision.reason


def _audit(data: bytes) -> None:
    result = govlog.audit(_split_entries(data))
    assert result.ok or result.reason


def _audit_export(data: bytes) -> None:
    result = govlog.audit_export(data)
    assert result.ok or result.reason


def _targets() -> dict[str, Target]:
    gov = _governance_records
    out = [
        Target("encoding", encoding.decode, (DecodeError,),
               lambda: [_manifest().encode(), encoding.encode({"a": [1, -2, None, True, b"x", "y", {"b": []}]})]),
        Target("manifest", Manifest.decode, (RecordError,), lambda: [_manifest().encode()]),
        Target("manifest-unverified", lambda d: Manifest.decode(d, verify=False), (RecordError,),
               lambda: [_manifest().encode()]),
        Target("announcement", Announcement.decode, (RecordError,),
               lambda: [Announcement.create(KEY, kind="publish", manifest=_manifest(), ts=1_700_000_000).encode()]),
        Target("roster", Roster.decode, (RecordError, GovernanceError), lambda: [gov()["roster"]]),
        Target("proposal", Proposal.decode, (RecordError, GovernanceError), lambda: [gov()["proposal"]]),
        Target("ballot", Ballot.decode, (RecordError, GovernanceError), lambda: [gov()["ballot"]]),
        Target("genesis", Genesis.decode, (RecordError, GovernanceError), lambda: [gov()["genesis"]]),
        Target("log-entry", govlog.Entry.decode, (RecordError,), lambda: _ledger_entries()[:3]),
        Target("log-load", lambda d: govlog.Ledger.load(_split_entries(d)), (govlog.AuditError,),
               lambda: [b"\xff\xfe\xfd".join(_ledger_entries())]),
        Target("log-audit", _audit, (), lambda: [b"\xff\xfe\xfd".join(_ledger_entries())]),
        Target("log-read-export", govlog.read_export, (govlog.AuditError,),
               lambda: [govlog.export_log(_ledger_entries())]),
        Target("log-audit-export", _audit_export, (), lambda: [govlog.export_log(_ledger_entries())]),
        Target("cid", lambda d: ids.parse_cid(_text(d)), (RecordError,), lambda: [_manifest().cid.encode()]),
        Target("peer-id", lambda d: keys.public_from_peer_id(_text(d)), (RecordError,),
               lambda: [keys.peer_id(KEY.public).encode()]),
        Target("private-key-file", lambda d: keys.parse_private(_text(d)), (RecordError,),
               lambda: [keys.format_private(KEY).encode()]),
        Target("public-key-file", lambda d: keys.parse_public(_text(d)), (RecordError,),
               lambda: [keys.format_public(KEY.public).encode()]),
        Target("licence-expression", lambda d: licences.check_expression(_text(d)), (GovernanceError,),
               lambda: [b"CC-BY-4.0 OR (ODbL-1.0 AND MIT)", b"GPL-2.0-only WITH Classpath-exception-2.0"]),
        Target("licence-evaluate", _evaluate, (), lambda: [b"CC0-1.0 OR MIT", b"GPL-3.0-only AND MIT"]),
        Target("policy-rules", lambda d: policy.parse_rules(_text(d)), (GovernanceError,),
               lambda: [_RULES_SEED.encode()]),
        Target("config-toml", _load_config, (ConfigError,), lambda: [_CONFIG_SEED.encode()]),
    ]
    for protocol in wire.PROTOCOLS:
        short = protocol.split("/")[2]
        for side in SIDES:
            out.append(Target(f"wire-{short}-{side}", lambda d, p=protocol, s=side: wire.decode_message(p, s, d),
                              (RecordError,),
                              lambda p=protocol, s=side: _payloads(p, s)))
            for assemble in (False, True):
                name = f"frames-{short}-{side}" + ("-assembled" if assemble else "")
                out.append(Target(name, _reader(protocol, side, assemble), (RecordError,),
                                  lambda p=protocol, s=side: [b"\x07" + _stream(p, s)]))
    return {t.name: t for t in out}


TARGETS = _targets()


def check(target: Target, data: bytes) -> None:
    """Run one input; the target's own refusals are fine, anything else propagates (a finding)."""
    try:
        target.run(data)
    except target.errors:
        pass
