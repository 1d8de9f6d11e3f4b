"""Issue 7: every decoder of bytes from the network or from disk, fuzzed; and bounded work per byte.

The targets are those of the atheris harness (scripts/fuzz/targets.py): encoding, manifests,
announcements, every stream protocol's messages and frame readers (each side, pieces and assembled),
governance records, log entries, log replay, audits and export files, ids, peer ids, key files,
licence expressions and their evaluation, policy rules and config.toml. For each: random bytes and
mutated valid inputs never raise anything but the decoder's own refusal class (test_wire.py and
test_records.py fuzz the wire and manifest decoders in more depth; this file covers every target
the same way and adds the structured TOML inputs).

Linearity: the work a decoder does is counted as Python and C function calls (sys.setprofile), which
is deterministic, unlike wall time on a shared machine; a decoder fed adversarial inputs of n and 4n
units must not do more than about 4 times the calls. Work hidden inside one C call (base58's big
integers, a parser library) is checked differently: such inputs must be refused before that call.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from communs.governance import ledger as govlog
from communs.governance import licences, policy
from communs.governance.errors import GovernanceError
from communs.governance.records import Ballot, Proposal, Roster
from communs.node.config import ConfigError, load_config
from communs.protocol import encoding, ids, keys, records, wire
from communs.protocol.errors import DecodeError, RecordError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_PATH = Path(__file__).resolve().parents[3] / "scripts" / "fuzz" / "targets.py"
_spec = importlib.util.spec_from_file_location("communs_fuzz_targets", _PATH)
assert _spec is not None and _spec.loader is not None
targets: Any = importlib.util.module_from_spec(_spec)
sys.modules["communs_fuzz_targets"] = targets
_spec.loader.exec_module(targets)

NAMES = sorted(targets.TARGETS)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def test_every_decoder_is_a_target() -> None:
    names = set(NAMES)
    for expected in ("encoding", "manifest", "announcement", "proposal", "ballot", "genesis", "roster",
                     "log-entry", "log-load", "log-audit", "log-read-export", "log-audit-export", "config-toml",
                     "peer-id", "cid", "private-key-file", "public-key-file", "licence-expression", "policy-rules"):
        assert expected in names
    for protocol in wire.PROTOCOLS:
        short = protocol.split("/")[2]
        for side in ("request", "response"):
            assert {f"wire-{short}-{side}", f"frames-{short}-{side}", f"frames-{short}-{side}-assembled"} <= names


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_accepted(name: str) -> None:
    """The seeds are valid inputs, so mutation starts past the first checks."""
    target = targets.TARGETS[name]
    for seed in target.seeds():
        target.run(seed)


def _mutants(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def mutate(draw: Any) -> bytes:
        buf = bytearray(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(1, 6))):
            op = draw(st.integers(0, 4))
            pos = draw(st.integers(0, len(buf)))
            if op == 0 and buf:
                buf[min(pos, len(buf) - 1)] = draw(st.integers(0, 255))
            elif op == 1:
                buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
            elif op == 2:
                del buf[pos:pos + draw(st.integers(1, 16))]
            elif op == 3:
                del buf[pos:]
            else:
                buf[pos:pos] = draw(st.sampled_from([b"\xdd\xff\xff\xff\xff", b"\xdf\x7f\xff\xff\xff",
                                                     b"\xdb\xff\xff\xff\xf0", b"\x91" * 40, b"\xff\xff\xff\x7f"]))
        return bytes(buf)

    return mutate()


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_only_the_decoders_refusal_escapes(name: str) -> None:
    target = targets.TARGETS[name]

    @FAST
    @given(st.one_of(st.binary(max_size=600), _mutants(target.seeds())))
    def run(data: bytes) -> None:
        targets.check(target, data)  # anything but target.errors propagates and fails the test

    run()


# ---- structured TOML: config.toml and policy rules -------------------------------------------------

_toml_scalars = (st.text(max_size=30) | st.integers(-(2**63), 2**63 - 1) | st.booleans()
                 | st.floats(allow_nan=False) | st.sampled_from(["127.0.0.1:0", "0.0.0.0:7471", "[::1]:0",
                                                                 "/ip4/127.0.0.1/tcp/0", "/ip4/1.2.3.4/tcp/1/p2p/x",
                                                                 "debug", "json", "communs", "any", "CC0-1.0"]))
_toml_values = st.recursive(_toml_scalars, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_config_keys = {"node": ["name", "federation", "listen", "bootstrap", "mdns", "dht", "x"],
                "admin": ["listen", "allow_remote", "max_request_bytes", "x"], "log": ["level", "format", "x"]}
_config_docs = st.dictionaries(
    st.sampled_from([*_config_keys, "other"]),
    st.dictionaries(st.sampled_from(sorted({k for v in _config_keys.values() for k in v})), _toml_values,
                    max_size=5),
    max_size=4)
_rules_docs = st.dictionaries(
    st.sampled_from(["accept_licences", "refuse_licences", "max_dataset_bytes", "storage_quota_bytes",
                     "trusted_publishers", "refused_publishers", "other"]), _toml_values, max_size=6)


def test_fuzz_config_documents() -> None:
    folder = Path(tempfile.mkdtemp(prefix="communs-config-fuzz-"))

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_config_docs)
    def run(doc: dict[str, Any]) -> None:
        (folder / "config.toml").write_text(tomli_w.dumps(doc))
        try:
            cfg = load_config(folder)
        except ConfigError as exc:
            assert (str(exc) and "\n" not in str(exc).strip()) or "TOML" in str(exc), exc
            return
        cfg.validate()  # what loaded is valid

    run()


def test_fuzz_policy_documents() -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_rules_docs)
    def run(doc: dict[str, Any]) -> None:
        try:
            rules = policy.parse_rules(tomli_w.dumps(doc))
        except GovernanceError:
            return
        assert policy.parse_rules(rules.to_toml()) == rules  # what is accepted survives its own TOML

    run()


# ---- bounded work ----------------------------------------------------------------------------------


def _calls(fn: Callable[[], object]) -> int:
    """Function calls (Python and C) made by fn: a deterministic measure of work."""
    count = 0

    def profile(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        try:
            fn()
        except (RecordError, GovernanceError, ConfigError):
            pass
    finally:
        sys.setprofile(None)
    return count


def _assert_linear(make: Callable[[int], Callable[[], object]], n: int, what: str) -> None:
    small, large = _calls(make(n)), _calls(make(4 * n))
    assert large <= 4.5 * small + 200, f"{what}: {small} calls for n={n}, {large} for 4n: more than linear"


def _manifest_map(files: int) -> dict[str, Any]:
    m = targets._manifest().to_dict()
    entry = m["files"][0]
    m["files"] = [{**entry, "path": f"d/{i:08d}.csv"} for i in range(files)]
    return m


ADVERSARIAL: dict[str, tuple[Callable[[int], bytes], Callable[[bytes], object], int]] = {
    # deep nesting (refused at the depth limit), many small items, long strings, many map keys
    "encoding nesting": (lambda n: b"\x91" * n + b"\xc0", encoding.decode, 2000),
    "encoding many items": (lambda n: b"\xdc" + n.to_bytes(2, "big") + b"\xc0" * n, encoding.decode, 4000),
    "encoding many keys": (lambda n: encoding.encode({f"k{i:06d}": i for i in range(n)}), encoding.decode, 1000),
    "encoding unsorted keys": (lambda n: b"\xde" + n.to_bytes(2, "big") + b"".join(
        b"\xa7" + f"k{n - i:06d}".encode() + b"\x00" for i in range(n)), encoding.decode, 1000),
    "manifest many files": (lambda n: encoding.encode(_manifest_map(n)), records.Manifest.decode, 200),
    "log export many entries": (lambda n: govlog.export_log(targets._ledger_entries() * n),
                                govlog.read_export, 100),
    "log audit many entries": (lambda n: b"\xff\xfe\xfd".join(targets._ledger_entries() * n),
                               targets.TARGETS["log-audit"].run, 100),
    "frames many small": (lambda n: b"\x01" + wire.HeadsRequest().encode() * n,
                          targets.TARGETS["frames-sync-request"].run, 1000),
    "frames one big, byte by byte": (
        lambda n: b"\x00" + wire.Records((b"x" * n,)).encode(), targets.TARGETS["frames-sync-response"].run, 3000),
}


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_decoding_work_grows_at_most_linearly(case: str) -> None:
    build, decode, n = ADVERSARIAL[case]
    _assert_linear(lambda k: (lambda data=build(k): decode(data)), n, case)


def test_huge_declared_lengths_are_refused_before_allocating() -> None:
    """A few bytes declaring a 4 GiB string, array or map allocate nothing of that size."""
    for header in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff",
                   b"\xc6\xff\xff\xff\xff", b"\xdc\xff\xff"):
        tracemalloc.start()
        try:
            with pytest.raises(DecodeError):
                encoding.decode(header + b"\xc0" * 16)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 256 << 10, (header, peak)


@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
@pytest.mark.parametrize("side", ["request", "response"])
def test_a_frame_declaring_2_gib_is_refused_from_its_prefix(protocol: str, side: str) -> None:
    reader = wire.FrameReader(protocol, side)  # type: ignore[arg-type]
    prefix = wire.encode_varint(2 << 30)
    for i, byte in enumerate(prefix):
        reader.feed(bytes([byte]))
        try:
            event = reader.next_event()
        except DecodeError as exc:
            assert "limit" in str(exc) or "too long" in str(exc), exc
            assert i < len(prefix) and reader.buffered <= len(prefix)
            return
        assert event is None
    raise AssertionError("a 2 GiB frame was not refused from its length prefix")


def test_long_texts_are_refused_before_the_expensive_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """base58 decoding is quadratic in C big-integer work, the licence parser is a library: a long input
    must be refused from its length before either runs (a 500 KB 'peer id' in a proposal took minutes)."""
    import base58

    calls: list[int] = []
    real = base58.b58decode
    monkeypatch.setattr(base58, "b58decode", lambda v, *a, **k: (calls.append(len(v)), real(v, *a, **k))[1])
    for n in (100, 10_000, 1_000_000):
        with pytest.raises(DecodeError):
            keys.public_from_peer_id("z" * n)
    assert all(c <= 64 for c in calls), calls
    assert keys.public_from_peer_id(keys.peer_id(targets.KEY.public)) == targets.KEY.public

    parsed: list[int] = []
    lic = licences._licensing()
    monkeypatch.setattr(type(lic), "parse", lambda self, text, *a, **k: (parsed.append(len(text)), None)[1])
    licences._parse_text.cache_clear()
    with pytest.raises(GovernanceError, match="longer than"):
        licences.check_expression("MIT AND " * 100_000 + "MIT")
    assert parsed == []
    licences._parse_text.cache_clear()
    with pytest.raises(DecodeError):
        ids.parse_cid("b" + "a" * 1_000_000)
    with pytest.raises(GovernanceError, match="larger than"):
        policy.parse_rules("#" * (policy.MAX_RULES_CHARS + 1))


def _ballots_log(k: int) -> list[bytes]:
    members = [keys.SigningKey(bytes([i + 1]) * 32) for i in range(3)]
    roster = Roster.of([(m.public, f"m{i}") for i, m in enumerate(members)])
    ledger = govlog.Ledger.found(targets.KEY, roster, at=50)
    p = Proposal.create(members[0], kind="policy", body=policy.Policy(accept_licences=("CC0-1.0",)),
                        roster=roster.hash, opens=100, closes=10**9, nonce=bytes(16))
    ledger.submit_proposal(p.encode(), 100)
    for i in range(k):  # one member changing their mind k times
        ledger.submit_ballot(Ballot.create(members[0], proposal=p.id, choice="yes" if i % 2 else "no",
                                           ts=110 + i).encode(), 110 + i)
    return [e.encode() for e in ledger.drain()]


def test_changes_of_vote_are_bounded() -> None:
    """Replaying ballots costs O(k^2) in the changes of vote k of one member on one proposal, so k is capped:
    the log a start-up replays stays small whatever a member does."""
    from communs.governance.tally import MAX_BALLOTS_PER_MEMBER

    entries = _ballots_log(MAX_BALLOTS_PER_MEMBER)
    govlog.Ledger.load(entries)  # the largest log one member can make on one proposal replays
    with pytest.raises(GovernanceError, match="no further changes of vote"):
        _ballots_log(MAX_BALLOTS_PER_MEMBER + 1)
