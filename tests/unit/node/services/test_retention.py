from __future__ import annotations

from communs.node.services.retention import Version, retired


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
