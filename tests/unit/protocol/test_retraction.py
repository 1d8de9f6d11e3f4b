from __future__ import annotations

from pathlib import Path

import pytest
from communs.protocol import encoding, keys, records, wire
from communs.protocol.errors import DecodeError, SignatureError
from communs.protocol.records import StaleError
from communs.protocol.retraction import (
    MAX_RETRACTION_BYTES,
    Retraction,
    UnknownDataset,
    check_applies,
    check_fresh_retraction,
    decode_gossip,
)

KEY = keys.SigningKey(bytes(range(32)))
OTHER = keys.SigningKey(bytes(range(1, 33)))
DATASET = records.new_dataset_id(KEY.public, bytes(16))
ELSEWHERE = records.new_dataset_id(KEY.public, b"x" * 16)


def _vector(name: str) -> tuple[bytes, str | None]:
    text = (Path(__file__).resolve().parents[3] / "protocol" / "README.md").read_text()
    block = text.split(f"<!-- vector:{name} -->\n", 1)[1]
    lines = block.split("\n\n", 1)
    rest = lines[1] if len(lines) > 1 else ""
    cid = rest.split("id: ", 1)[1].split()[0] if rest.lstrip().startswith("id: ") else None
    return bytes.fromhex("".join(line.strip() for line in lines[0].splitlines())), cid


def test_readme_vector_decodes_and_is_rebuilt_byte_for_byte() -> None:
    raw, cid = _vector("retraction")
    r = Retraction.decode(raw)
    assert r.cid == cid and r.dataset == DATASET and r.publisher == KEY.public
    assert r.reason == "published by mistake" and r.created == 1700000100
    assert Retraction.create(KEY, dataset=DATASET, reason="published by mistake", created=1700000100).encode() == raw
    frame, _ = _vector("retractions")
    assert frame == wire.RetractionsRequest(None).encode()


def test_signature_covers_the_dataset_so_it_cannot_be_replayed_onto_another() -> None:
    r = Retraction.create(KEY, dataset=DATASET, reason="", created=1)
    moved = {**r.to_dict(), "dataset": ELSEWHERE}
    with pytest.raises(SignatureError):
        Retraction.decode(encoding.encode(moved))


def test_a_key_cannot_sign_for_another_publisher() -> None:
    r = Retraction.create(OTHER, dataset=DATASET, reason="", created=1)
    forged = {**r.to_dict(), "publisher": KEY.public}  # claims to be the publisher, signed by another key
    with pytest.raises(SignatureError):
        Retraction.decode(encoding.encode(forged))


def test_applies_only_to_a_held_dataset_of_the_same_publisher() -> None:
    mine = Retraction.create(KEY, dataset=DATASET, reason="", created=1)
    check_applies(mine, KEY.public)
    with pytest.raises(DecodeError, match="another key"):
        check_applies(Retraction.create(OTHER, dataset=DATASET, reason="", created=1), KEY.public)
    with pytest.raises(UnknownDataset, match="not known"):
        check_applies(mine, None)


def test_field_rules() -> None:
    with pytest.raises(DecodeError, match="reason"):
        Retraction.create(KEY, dataset=DATASET, reason="x" * 201, created=1)
    with pytest.raises(DecodeError, match="control"):
        Retraction.create(KEY, dataset=DATASET, reason="a\nb", created=1)
    with pytest.raises(DecodeError, match="dataset"):
        Retraction.create(KEY, dataset=b"short", reason="", created=1)
    longest = Retraction.create(KEY, dataset=DATASET, reason="\u00e9" * 200, created=2**63 - 1)
    assert len(longest.encode()) <= MAX_RETRACTION_BYTES


def test_gossip_decodes_by_type_and_refuses_others() -> None:
    r = Retraction.create(KEY, dataset=DATASET, reason="", created=1)
    assert isinstance(decode_gossip(r.encode()), Retraction)
    ann_raw, _ = _vector("announce")
    assert isinstance(decode_gossip(ann_raw), records.Announcement)
    with pytest.raises(DecodeError, match="neither"):
        decode_gossip(encoding.encode({"type": "manifest", "v": 1}))


def test_gossip_freshness() -> None:
    r = Retraction.create(KEY, dataset=DATASET, reason="", created=10_000)
    check_fresh_retraction(r, 10_100)
    with pytest.raises(StaleError):
        check_fresh_retraction(r, 20_000)
    with pytest.raises(StaleError):
        check_fresh_retraction(r, 9_000)


def test_retractions_request_round_trip() -> None:
    for after in (None, DATASET):
        req = wire.RetractionsRequest(after)
        assert wire.decode_message(wire.SYNC_PROTOCOL, "request", req.encode()[1:]) == req
    with pytest.raises(DecodeError):
        wire.RetractionsRequest(b"short")
