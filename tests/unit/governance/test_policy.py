"""The licence policy: RULES.toml parsing (every bad input named precisely) and per-manifest decisions."""

from __future__ import annotations

import pytest
from communs.governance.errors import PolicyError
from communs.governance.policy import (
    DEFAULT_POLICY,
    Decision,
    Policy,
    evaluate,
    fits_quota,
    parse_rules,
)
from communs.protocol import encoding, keys

ALICE = keys.peer_id(keys.SigningKey(bytes([1]) * 32).public)
BOB = keys.peer_id(keys.SigningKey(bytes([2]) * 32).public)
CAROL = keys.peer_id(keys.SigningKey(bytes([3]) * 32).public)

CONTRACT_EXAMPLE = """
accept_licences = ["CC0-1.0", "CC-BY-4.0", "ODbL-1.0", "etalab-2.0"]   # SPDX ids or LicenseRef-...
refuse_licences = []                 # never accepted, whatever else says
max_dataset_bytes = 10_000_000_000   # optional
storage_quota_bytes = 500_000_000_000  # optional
trusted_publishers = "any"           # or a list of peer ids
refused_publishers = []              # peer ids
"""


def test_contract_example_parses() -> None:
    policy = parse_rules(CONTRACT_EXAMPLE)
    assert policy.accept_licences == ("CC-BY-4.0", "CC0-1.0", "etalab-2.0", "ODbL-1.0")
    assert policy.refuse_licences == ()
    assert policy.max_dataset_bytes == 10_000_000_000
    assert policy.storage_quota_bytes == 500_000_000_000
    assert policy.trusted_publishers == "any"
    assert policy.refused_publishers == ()


def test_normalised_sorted_and_deduplicated() -> None:
    policy = parse_rules(
        f'accept_licences = ["odbl-1.0", "GPL-2.0", "ODbL-1.0", "licenseref-x"]\n'
        f'trusted_publishers = ["{BOB}", "{ALICE}", "{BOB}"]\n'
    )
    assert policy.accept_licences == ("GPL-2.0-only", "LicenseRef-x", "ODbL-1.0")
    assert policy.trusted_publishers == tuple(sorted([ALICE, BOB]))


def test_optional_keys_default() -> None:
    policy = parse_rules('accept_licences = ["MIT"]')
    assert policy == Policy(accept_licences=("MIT",))
    assert policy.max_dataset_bytes is None and policy.storage_quota_bytes is None
    assert policy.trusted_publishers == "any"


def test_dict_round_trip_is_canonical() -> None:
    policy = parse_rules(CONTRACT_EXAMPLE + "")
    as_dict = policy.to_dict()
    assert set(as_dict) == {"accept_licences", "refuse_licences", "max_dataset_bytes", "storage_quota_bytes",
                            "trusted_publishers", "refused_publishers"}
    again = Policy.from_dict(encoding.decode(encoding.encode(as_dict)))
    assert again == policy
    assert encoding.encode(again.to_dict()) == encoding.encode(as_dict)
    listed = Policy(accept_licences=("MIT",), trusted_publishers=(ALICE,), refused_publishers=(BOB,))
    assert Policy.from_dict(listed.to_dict()) == listed


def test_toml_round_trip() -> None:
    policy = Policy(accept_licences=("CC0-1.0", "MIT"), refuse_licences=("CC-BY-NC-4.0",),
                    max_dataset_bytes=5, trusted_publishers=(ALICE,), refused_publishers=(BOB,))
    assert parse_rules(policy.to_toml()) == policy
    assert parse_rules(DEFAULT_POLICY.to_toml()) == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('accept_licences = ["MIT"]\nmax_size = 3', "unknown key 'max_size' in the licence policy"),
        ('accept_licences = ["MIT"]\nfoo = 1\nbar = 2', "unknown keys 'bar', 'foo'"),
        ("refuse_licences = []", "the licence policy must set accept_licences"),
        ('accept_licences = ["Nope-1.0"]', "accept_licences: 'Nope-1.0' is not an SPDX licence id"),
        ('accept_licences = ["MIT OR CC0-1.0"]', "'MIT OR CC0-1.0' is not an SPDX licence id"),
        ('accept_licences = ["LLVM-exception"]', "'LLVM-exception' is not an SPDX licence id"),
        ('accept_licences = []\nrefuse_licences = ["CC-BY-NC"]', "refuse_licences: 'CC-BY-NC' is not"),
        ('accept_licences = "MIT"', "accept_licences must be a list, not a string"),
        ("accept_licences = [1]", "accept_licences must list licence ids as strings, not an integer"),
        ('accept_licences = []\nmax_dataset_bytes = "10GB"', "max_dataset_bytes must be a whole number"),
        ("accept_licences = []\nmax_dataset_bytes = 1.5", "not a number with a fraction"),
        ("accept_licences = []\nmax_dataset_bytes = true", "not a boolean"),
        ("accept_licences = []\nstorage_quota_bytes = -1", "storage_quota_bytes must not be negative"),
        ("accept_licences = []\nstorage_quota_bytes = 2024-01-01", "storage_quota_bytes must be a whole"),
        ('accept_licences = []\ntrusted_publishers = "all"', 'trusted_publishers must be "any" or a list'),
        ('accept_licences = []\ntrusted_publishers = ["QmNotAPeer"]', "'QmNotAPeer' is not a valid Ed25519"),
        ("accept_licences = []\nrefused_publishers = [7]", "refused_publishers must list peer ids as"),
        ('accept_licences = []\nrefused_publishers = "x"', "refused_publishers must be a list"),
        ("accept_licences = [", "not valid TOML"),
        ('accept_licences = []\n[table]\nx = 1', "unknown key 'table'"),
    ],
)
def test_bad_rules_files_are_refused_precisely(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_rules(text)
    assert message in str(info.value)


def test_from_dict_refuses_non_map() -> None:
    with pytest.raises(PolicyError, match="table of keys"):
        Policy.from_dict(["accept_licences"])


OPEN = Policy(accept_licences=("CC-BY-4.0", "CC0-1.0", "ODbL-1.0"), refuse_licences=("CC-BY-NC-4.0",),
              max_dataset_bytes=1000)


@pytest.mark.parametrize(
    ("policy", "licence", "size", "publisher", "own", "wanted", "reason"),
    [
        (DEFAULT_POLICY, "CC0-1.0", 10, ALICE, True, True, "published here"),
        (DEFAULT_POLICY, "Nope", 10**15, ALICE, True, True, "published here"),
        (DEFAULT_POLICY, "CC0-1.0", 10, ALICE, False, False, "the policy in force accepts no licence"),
        (OPEN, "CC0-1.0", 10, ALICE, False, True, "licence CC0-1.0 is accepted by the policy in force"),
        (OPEN, "CC-BY-NC-4.0", 10, ALICE, False, False, "licence CC-BY-NC-4.0 is refused by the policy"),
        (OPEN, "GPL-3.0-only", 10, ALICE, False, False, "licence GPL-3.0-only is not accepted by the policy"),
        (OPEN, "CC-BY-NC-4.0 OR ODbL-1.0", 10, ALICE, False, True, "ODbL-1.0 is accepted"),
        (OPEN, "not an expression", 10, ALICE, False, False, "invalid"),
        (OPEN, "CC0-1.0", 1000, ALICE, False, True, "accepted"),
        (OPEN, "CC0-1.0", 1001, ALICE, False, False, "size 1001 bytes is over the policy's limit of 1000"),
        (Policy(accept_licences=("MIT",), refused_publishers=(BOB,)), "MIT", 1, BOB, False, False,
         f"publisher {BOB} is refused by the policy in force"),
        (Policy(accept_licences=("MIT",), refused_publishers=(BOB,)), "MIT", 1, BOB, True, True, "published"),
        (Policy(accept_licences=("MIT",), trusted_publishers=(ALICE,)), "MIT", 1, ALICE, False, True, "MIT"),
        (Policy(accept_licences=("MIT",), trusted_publishers=(ALICE,)), "MIT", 1, CAROL, False, False,
         f"publisher {CAROL} is not among the trusted publishers"),
        (Policy(accept_licences=("MIT",), trusted_publishers=()), "MIT", 1, ALICE, False, False, "trusted"),
    ],
)
def test_evaluate(policy: Policy, licence: str, size: int, publisher: str, own: bool, wanted: bool,
                  reason: str) -> None:
    decision = evaluate(policy, licence=licence, size=size, publisher_peer_id=publisher, own=own)
    assert decision.wanted is wanted
    assert reason in decision.reason


def test_fits_quota() -> None:
    assert fits_quota(DEFAULT_POLICY, 10**18, 10**18) == Decision(True, "no storage quota is set")
    quota = Policy(storage_quota_bytes=100)
    assert fits_quota(quota, 60, 40).wanted
    refused = fits_quota(quota, 61, 40)
    assert not refused.wanted
    assert "exceed the storage quota of 100 bytes (61 bytes already used)" in refused.reason


def test_lifecycle_keys_default_parse_and_stay_out_of_old_maps() -> None:
    from communs.governance.errors import PolicyError
    from communs.governance.policy import Policy, parse_rules

    old = parse_rules('accept_licences = ["CC0-1.0"]\n')
    assert old.keep_versions is None and old.keep_retracted is False
    assert "keep_versions" not in old.to_dict() and "keep_retracted" not in old.to_dict()
    new = parse_rules('accept_licences = ["CC0-1.0"]\nkeep_versions = 2\nkeep_retracted = true\n')
    assert (new.keep_versions, new.keep_retracted) == (2, True)
    assert Policy.from_dict(new.to_dict()) == new
    assert "keep_versions = 2" in new.to_toml()
    for bad in ("keep_versions = 0", "keep_versions = true", 'keep_versions = "2"', "keep_retracted = 1"):
        with pytest.raises(PolicyError, match="keep_"):
            parse_rules(f'accept_licences = ["CC0-1.0"]\n{bad}\n')


def test_min_copies_is_a_bounded_whole_number_and_absent_from_the_map_when_unset() -> None:
    from communs.governance.policy import Policy, PolicyError, parse_rules

    p = parse_rules('accept_licences = ["CC0-1.0"]\nmin_copies = 3\n')
    assert p.min_copies == 3 and p.to_dict()["min_copies"] == 3
    assert Policy.from_dict(p.to_dict()) == p
    assert "min_copies" not in parse_rules('accept_licences = ["CC0-1.0"]\n').to_dict()
    for bad in ("-1", "1000", "true", '"3"', "2.5"):
        with pytest.raises(PolicyError, match="min_copies"):
            parse_rules(f'accept_licences = ["CC0-1.0"]\nmin_copies = {bad}\n')
