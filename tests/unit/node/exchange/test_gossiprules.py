"""Gossip's pure decisions: the validator's verdicts, the warning throttle, whom to ask for an announced
manifest and when to give up."""

from __future__ import annotations

import os

import pytest
from communs.node.exchange import gossiprules as rules
from communs.node.exchange.facts import record_facts
from communs.protocol import keys
from communs.protocol.errors import DecodeError, RecordError, SignatureError
from communs.protocol.records import ANNOUNCE_MAX_AGE, MAX_ANNOUNCE_BYTES, Announcement, FileEntry, Manifest, StaleError
from communs.protocol.retraction import Retraction

NOW = 1_800_000_000


def _manifest(key: keys.SigningKey, size: int = 3) -> Manifest:
    return Manifest.create(key, dataset=os.urandom(32), version=1, prev=None, seq=1, log_prev=None, title="t",
                           licence="CC0-1.0", created=NOW, files=[FileEntry.of("a", [(os.urandom(32), size)])])


def test_check_message_accepts_a_fresh_announcement_and_a_fresh_retraction() -> None:
    key = keys.SigningKey.generate()
    m = _manifest(key)
    ann = Announcement.create(key, kind="publish", manifest=m, ts=NOW)
    got = rules.check_message(ann.encode(), NOW + 5)
    assert isinstance(got, Announcement) and got.id == ann.id and got.manifest == m.id
    ret = Retraction.create(key, dataset=m.dataset, reason="withdrawn", created=NOW)
    assert isinstance(rules.check_message(ret.encode(), NOW + 5), Retraction)


def test_check_message_refuses_stale_oversized_and_forged_messages_with_their_reason() -> None:
    key = keys.SigningKey.generate()
    signed = Announcement.create(key, kind="publish", manifest=_manifest(key), ts=NOW)
    ann = signed.encode()
    with pytest.raises(StaleError) as stale:
        rules.check_message(ann, NOW + ANNOUNCE_MAX_AGE + 1)
    assert rules.rejection(stale.value, len(ann))[0] == "stale"
    big = b"\x00" * (MAX_ANNOUNCE_BYTES + 1)
    with pytest.raises(DecodeError) as large:
        rules.check_message(big, NOW)
    assert rules.rejection(large.value, len(big)) == ("too-large", str(large.value))
    at = ann.index(signed.sig)
    forged = ann[:at] + bytes([ann[at] ^ 1]) + ann[at + 1:]  # one bit of the signature changed
    with pytest.raises(SignatureError) as bad:
        rules.check_message(forged, NOW)
    assert rules.rejection(bad.value, len(forged))[0] == "bad-signature"
    with pytest.raises(RecordError) as junk:
        rules.check_message(b"\x01\x02", NOW)
    assert rules.rejection(junk.value, 2)[0] == "malformed"


def test_rejection_names_each_kind_of_error() -> None:
    assert rules.rejection(SignatureError("bad sig"), 10) == ("bad-signature", "bad sig")
    assert rules.rejection(StaleError("old"), 10) == ("stale", "old")
    assert rules.rejection(DecodeError("junk"), 10) == ("malformed", "junk")
    assert rules.rejection(ValueError("bug"), 10) == ("malformed", "ValueError: bug")


def test_a_replay_is_one_seen_within_the_freshness_window() -> None:
    assert not rules.is_replay(None, 100.0)
    assert rules.is_replay(100.0, 100.0 + ANNOUNCE_MAX_AGE - 1)
    assert not rules.is_replay(100.0, 100.0 + ANNOUNCE_MAX_AGE)


def test_warnings_are_throttled_per_interval_and_count_what_was_kept_quiet() -> None:
    said, state = rules.warn_step(None, 1000.0, "stale")
    assert said == 1 and state == (1000.0, 0, "stale")
    said, state = rules.warn_step(state, 1010.0, "malformed")
    assert said is None and state == (1000.0, 1, "malformed")
    said, state = rules.warn_step(state, 1020.0, "stale")
    assert said is None and state == (1000.0, 2, "stale")
    said, state = rules.warn_step(state, 1000.0 + rules.REJECT_WARN_INTERVAL, "stale")
    assert said == 3 and state == (1000.0 + rules.REJECT_WARN_INTERVAL, 0, "stale")


def test_fetch_peers_are_relay_then_announcer_then_origin_without_repeats_or_self() -> None:
    assert rules.fetch_peers("relay", "node", "origin", "me") == ["relay", "node", "origin"]
    assert rules.fetch_peers("node", "node", "", "me") == ["node"]
    assert rules.fetch_peers("me", "node", "me", "me") == ["node"]


def test_next_fetch_peer_tries_each_connected_peer_once_then_starts_again() -> None:
    connected = {"a", "c"}.__contains__
    assert rules.next_fetch_peer(["a", "b", "c"], set(), connected) == ("a", False)
    assert rules.next_fetch_peer(["a", "b", "c"], {"a"}, connected) == ("c", False)
    assert rules.next_fetch_peer(["a", "b", "c"], {"a", "c"}, connected) == ("a", True)
    assert rules.next_fetch_peer(["b"], set(), connected) == (None, False)


def test_retry_delays_grow_then_give_up() -> None:
    delays = [rules.retry_delay(i) for i in range(len(rules.FETCH_RETRY_DELAYS) + 1)]
    assert delays[:-1] == list(rules.FETCH_RETRY_DELAYS) and delays[-1] is None
    assert delays[:-1] == sorted(delays[:-1])


def test_a_fetched_manifest_must_match_its_announcement() -> None:
    key = keys.SigningKey.generate()
    m = _manifest(key)
    ann = Announcement.create(key, kind="publish", manifest=m, ts=NOW)
    assert rules.matches(record_facts(m.encode()), ann)
    other = _manifest(key, size=4)
    assert not rules.matches(record_facts(other.encode()), ann)
