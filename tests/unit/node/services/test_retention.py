from __future__ import annotations

import pytest
from communs.node.services.retention import OwnVersion, PruneRefused, Version, prune_own, prune_reason, retired


def v(ds: str, n: int, *, own: bool = False, wanted: bool = True) -> Version:
    return Version(f"{ds}{n}".encode(), ds.encode(), n, own, wanted)


def test_keeps_all_without_the_key() -> None:
    assert retired([v("a", 1), v("a", 2)], None) == {}


def test_keeps_the_latest_n_of_each_dataset() -> None:
    held = [v("a", 1), v("a", 4), v("a", 2), v("a", 3), v("b", 1)]
    out = retired(held, 2)
    assert set(out) == {b"a1", b"a2"}
    assert "keep_versions" in out[b"a1"] and "latest 2" in out[b"a1"]
    assert retired(held, 1).keys() == {b"a1", b"a2", b"a3"}


def test_own_versions_are_never_retired() -> None:
    assert retired([v("a", 1, own=True), v("a", 2, own=True), v("a", 3, own=True)], 1) == {}


def test_versions_not_wanted_or_retracted_do_not_count() -> None:
    held = [v("a", 1), v("a", 2), v("a", 3, wanted=False)]
    assert retired(held, 2) == {}
    assert retired(held, 1).keys() == {b"a1"}


# ---- prune_own: the publisher's operator asks ------------------------------------------------------


def ov(n: int, state: str = "own", own: bool = True) -> OwnVersion:
    return OwnVersion(f"m{n}".encode(), n, own, state)


def test_prune_keeps_the_latest_n_own_versions_and_releases_the_rest() -> None:
    versions = [ov(2), ov(4), ov(1), ov(3)]
    p = prune_own(versions, 2, None)
    assert p.keep == 2 and p.kept == (b"m4", b"m3") and set(p.release) == {b"m2", b"m1"}
    assert "operator" in p.release[b"m1"] and "latest 2" in p.release[b"m1"]
    assert set(prune_own(versions, 1, None).release) == {b"m3", b"m2", b"m1"}
    assert prune_own(versions, 4, None).release == {} and prune_own(versions, 9, None).release == {}


def test_prune_defaults_to_the_policy_keep_versions_and_an_explicit_keep_wins() -> None:
    versions = [ov(1), ov(2), ov(3)]
    assert set(prune_own(versions, None, 1).release) == {b"m1", b"m2"}
    assert set(prune_own(versions, 2, 1).release) == {b"m1"}
    with pytest.raises(PruneRefused, match=r"keeps every version .*--keep N") as exc:
        prune_own(versions, None, None)
    assert exc.value.status == 409  # the request is well formed: the policy in force leaves it undecided


def test_prune_twice_releases_nothing_more_and_counts_released_versions_in_the_ranking() -> None:
    released = prune_reason(2)
    after = [ov(1, "not-wanted"), ov(2, "not-wanted"), ov(3), ov(4)]
    assert prune_own(after, 2, None).release == {}
    assert set(prune_own([*after, ov(5)], 2, None).release) == {b"m3"}  # a fifth version moves the window
    assert released.startswith("an older version")


@pytest.mark.parametrize(("versions", "keep", "status", "message"), [
    ([], 2, 404, "no dataset"),
    ([ov(1, own=False), ov(2, own=False)], 1, 403, "another node"),
    ([ov(1, "retracted"), ov(2, "retracted")], 1, 409, "retracted"),
    ([ov(1), ov(2)], 0, 400, "at least 1"),
    ([ov(1), ov(2)], -3, 400, "at least 1"),
    ([ov(1), ov(2)], True, 400, "whole number"),
])
def test_prune_refusals_are_one_sentence_with_a_status(versions: list[OwnVersion], keep: int, status: int,
                                                       message: str) -> None:
    with pytest.raises(PruneRefused, match=message) as exc:
        prune_own(versions, keep, 3)
    assert exc.value.status == status and str(exc.value).count(". ") == 0
