"""Licence-expression evaluation: the contract's AND / OR / WITH semantics, table-driven."""

from __future__ import annotations

import pytest
from communs.governance.licences import LicenceError, check_expression, check_id, satisfiable
from hypothesis import given, settings
from hypothesis import strategies as st

OPEN = {"CC0-1.0", "CC-BY-4.0", "ODbL-1.0", "etalab-2.0", "MIT", "Apache-2.0"}

# (expression, accepted, refused, wanted, words expected in the reason)
CASES = [
    # single ids
    ("CC-BY-4.0", OPEN, set(), True, "CC-BY-4.0 is accepted"),
    ("CC-BY-NC-4.0", OPEN, set(), False, "licence CC-BY-NC-4.0 is not accepted by the policy in force"),
    ("etalab-2.0", OPEN, set(), True, "etalab-2.0"),
    # OR: either
    ("CC-BY-4.0 OR ODbL-1.0", {"ODbL-1.0"}, set(), True, "ODbL-1.0 is accepted"),
    ("CC-BY-NC-4.0 OR CC-BY-4.0", OPEN, set(), True, "CC-BY-4.0 is accepted"),
    ("CC-BY-NC-4.0 OR GPL-3.0-only", OPEN, set(), False, "no alternative is acceptable"),
    # AND: both
    ("CC-BY-4.0 AND ODbL-1.0", OPEN, set(), True, "CC-BY-4.0 and ODbL-1.0 are accepted"),
    ("CC-BY-4.0 AND CC-BY-NC-4.0", OPEN, set(), False, "CC-BY-NC-4.0 is not accepted"),
    # WITH: the licence is what counts, the exception is fine
    ("Apache-2.0 WITH LLVM-exception", OPEN, set(), True, "Apache-2.0 is accepted"),
    ("GPL-2.0-only WITH Classpath-exception-2.0", OPEN, set(), False, "GPL-2.0-only is not accepted"),
    # nesting
    ("(MIT OR GPL-3.0-only) AND (CC-BY-NC-4.0 OR ODbL-1.0)", OPEN, set(), True, "MIT and ODbL-1.0"),
    ("(MIT AND GPL-3.0-only) OR (CC-BY-NC-4.0 AND ODbL-1.0)", OPEN, set(), False, "no alternative"),
    ("((Apache-2.0 WITH LLVM-exception) OR BSD-3-Clause) AND CC0-1.0", OPEN, set(), True, "Apache-2.0"),
    ("MIT AND (GPL-3.0-only OR (CC0-1.0 AND (BSD-2-Clause OR CC-BY-4.0)))", OPEN, set(), True,
     "MIT, CC0-1.0 and CC-BY-4.0"),
    # refused licences are never required, and refusal wins over acceptance
    ("CC-BY-4.0", OPEN, {"CC-BY-4.0"}, False, "licence CC-BY-4.0 is refused by the policy in force"),
    ("CC-BY-4.0 OR CC-BY-SA-4.0", OPEN | {"CC-BY-SA-4.0"}, {"CC-BY-SA-4.0"}, True, "CC-BY-4.0 is accepted"),
    ("CC-BY-SA-4.0 OR CC-BY-4.0", OPEN | {"CC-BY-SA-4.0"}, {"CC-BY-SA-4.0"}, True, "CC-BY-4.0 is accepted"),
    ("MIT AND CC-BY-SA-4.0", OPEN | {"CC-BY-SA-4.0"}, {"CC-BY-SA-4.0"}, False, "CC-BY-SA-4.0 is refused"),
    ("(MIT OR CC-BY-SA-4.0) AND CC-BY-SA-4.0", OPEN, {"CC-BY-SA-4.0"}, False, "CC-BY-SA-4.0 is refused"),
    ("Apache-2.0 WITH LLVM-exception", OPEN, {"Apache-2.0"}, False, "Apache-2.0 is refused"),
    # LicenseRef- ids: allowed, accepted only when listed, case-insensitive
    ("LicenseRef-coop-data", OPEN, set(), False, "LicenseRef-coop-data is not accepted"),
    ("LicenseRef-coop-data", OPEN | {"LicenseRef-coop-data"}, set(), True, "coop-data is accepted"),
    ("licenseref-Coop-Data", {"LicenseRef-coop-data"}, set(), True, "accepted"),
    ("LicenseRef-coop-data OR MIT", {"LicenseRef-coop-data"}, {"LicenseRef-coop-data"}, False, "refused"),
    # an aliased LicenseRef is not silently read as the SPDX licence it resembles
    ("LicenseRef-MIT-Bootstrap", {"MIT"}, set(), False, "LicenseRef-MIT-Bootstrap is not accepted"),
    # case variants of SPDX ids and operators
    ("cc-by-4.0", {"CC-BY-4.0"}, set(), True, "CC-BY-4.0 is accepted"),
    ("CC-BY-4.0", {"cc-by-4.0"}, set(), True, "CC-BY-4.0 is accepted"),
    ("cc0-1.0 or odbl-1.0", {"ODBL-1.0"}, set(), True, "ODbL-1.0 is accepted"),
    ("apache-2.0 with llvm-exception", {"Apache-2.0"}, set(), True, "Apache-2.0 is accepted"),
    ("CC-BY-4.0", OPEN, {"cc-by-4.0"}, False, "refused"),
    # deprecated ids read as their one-for-one replacement
    ("GPL-2.0", {"GPL-2.0-only"}, set(), True, "GPL-2.0-only is accepted"),
    ("GPL-2.0-only", {"GPL-2.0"}, set(), True, "GPL-2.0-only is accepted"),
    ("GPL-2.0+", {"GPL-2.0-or-later"}, set(), True, "GPL-2.0-or-later is accepted"),
    ("GPL-2.0+", {"GPL-2.0-only"}, set(), False, "GPL-2.0-or-later is not accepted"),
    ("LGPL-2.1", OPEN, {"LGPL-2.1-only"}, False, "LGPL-2.1-only is refused"),
    # invalid or unknown expressions are never wanted
    ("", OPEN, set(), False, "empty"),
    ("   ", OPEN, set(), False, "empty"),
    ("Foo-1.0", OPEN, set(), False, "unknown licence id 'Foo-1.0'"),
    ("MIT OR Foo-1.0", OPEN, set(), False, "unknown licence id"),
    ("(MIT", OPEN, set(), False, "invalid"),
    ("MIT AND", OPEN, set(), False, "invalid"),
    ("MIT CC0-1.0", OPEN, set(), False, "invalid"),
    ("MIT WITH Foo-exception", OPEN, set(), False, "invalid"),
    ("LLVM-exception", OPEN, set(), False, "invalid"),
    ("MIT/Apache-2.0", OPEN, set(), False, "invalid"),
    ("DocumentRef-x:LicenseRef-y", OPEN, set(), False, "unknown licence id"),
    ("LicenseRef-", OPEN, set(), False, "unknown licence id"),
    ("MIT " * 400, OPEN, set(), False, "longer than"),
]


@pytest.mark.parametrize(("expression", "accepted", "refused", "wanted", "words"), CASES)
def test_satisfiable(
    expression: str, accepted: set[str], refused: set[str], wanted: bool, words: str
) -> None:
    ok, reason = satisfiable(expression, accepted, refused)
    assert ok is wanted, reason
    assert words in reason


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("cc-by-4.0", "CC-BY-4.0"),
        ("cc-by-4.0 or odbl-1.0", "CC-BY-4.0 OR ODbL-1.0"),
        ("GPL-2.0", "GPL-2.0-only"),
        ("GPL-2.0+ AND mit", "GPL-2.0-or-later AND MIT"),
        ("apache-2.0 with llvm-exception", "Apache-2.0 WITH LLVM-exception"),
        ("licenseref-My-Licence", "LicenseRef-My-Licence"),
        ("(MIT OR Apache-2.0) AND CC0-1.0", "(MIT OR Apache-2.0) AND CC0-1.0"),
        ("etalab-2.0", "etalab-2.0"),
    ],
)
def test_check_expression_normalises(text: str, normalised: str) -> None:
    assert check_expression(text) == normalised


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("Foo-1.0", "unknown licence id 'Foo-1.0'"),
        ("MIT AND", "invalid"),
        ("MIT WITH MIT", "invalid"),
        ("LicenseRef-a b", "not one licence id"),
    ],
)
def test_check_expression_refuses(text: str, words: str) -> None:
    with pytest.raises(LicenceError, match=words):
        check_expression(text)


def test_check_id() -> None:
    assert check_id("cc-by-4.0") == "CC-BY-4.0"
    assert check_id("GPL-2.0") == "GPL-2.0-only"
    assert check_id("LicenseRef-x") == "LicenseRef-x"
    for bad in ("MIT OR CC0-1.0", "LLVM-exception", "Nope-9", "", "MIT WITH LLVM-exception"):
        with pytest.raises(LicenceError):
            check_id(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("MITAND OR()WITH-ap2.0+LicenseRef:/'\x00é")), max_size=40))
def test_any_text_gives_an_answer_never_a_crash(text: str) -> None:
    ok, reason = satisfiable(text, {"MIT", "Apache-2.0"}, set())
    assert isinstance(ok, bool) and reason
    try:
        normalised = check_expression(text)
    except LicenceError as exc:
        assert not ok and str(exc)
    else:
        assert check_expression(normalised) == normalised
