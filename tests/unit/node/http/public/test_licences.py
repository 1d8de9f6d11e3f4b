"""The SPDX -> licence IRI table (one test per entry) and the choice made for expressions."""

from __future__ import annotations

import pytest
from communs.governance.licences import check_expression
from communs.node.http.public import licences


@pytest.mark.parametrize("spdx_id,code", sorted(licences.EU_LICENCES.items()))
def test_table_entry(spdx_id: str, code: str) -> None:
    assert check_expression(spdx_id) == spdx_id  # the key is a canonical SPDX id
    assert licences.licence_iri(spdx_id) == licences.EU_AUTHORITY + code
    assert licences.choose(spdx_id).iri == licences.EU_AUTHORITY + code
    assert licences.choose(spdx_id).rights is None
    assert licences.words(spdx_id) != spdx_id  # a name in words for the human page


def test_an_id_outside_the_eu_table_points_to_spdx() -> None:
    assert licences.licence_iri("MIT") == "https://spdx.org/licenses/MIT"
    assert licences.licence_iri("LicenseRef-coop") is None


def test_or_prefers_the_eu_alternative() -> None:
    c = licences.choose("MIT OR CC0-1.0")
    assert c.iri == licences.EU_AUTHORITY + "CC0"
    assert c.rights == "MIT OR CC0-1.0"
    assert c.ids == ("MIT", "CC0-1.0")


def test_or_without_eu_takes_the_first_alternative() -> None:
    assert licences.choose("MIT OR Apache-2.0").iri == "https://spdx.org/licenses/MIT"


def test_with_exception_is_the_base_licence() -> None:
    c = licences.choose("GPL-2.0-or-later WITH Classpath-exception-2.0")
    assert c.iri == "https://spdx.org/licenses/GPL-2.0-or-later"
    assert c.rights == "GPL-2.0-or-later WITH Classpath-exception-2.0"


def test_and_is_a_titled_document_linking_each_licence() -> None:
    c = licences.choose("CC-BY-4.0 AND ODbL-1.0")
    assert c.iri is None
    assert c.title == "CC-BY-4.0 AND ODbL-1.0"
    assert c.needs == ("CC-BY-4.0", "ODbL-1.0")


def test_or_of_and_picks_the_simple_alternative() -> None:
    assert licences.choose("(MIT AND BSD-2-Clause) OR CC-BY-4.0").iri == licences.EU_AUTHORITY + "CC_BY_4_0"


def test_licenseref_alone_is_titled() -> None:
    c = licences.choose("LicenseRef-coop-1")
    assert c.iri is None and c.title == "LicenseRef-coop-1"


def test_unparseable_text_still_gives_a_licence_document() -> None:
    c = licences.choose("((( nonsense")
    assert c.iri is None and c.title
