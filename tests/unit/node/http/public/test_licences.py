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


# Codes of the EU licence authority table confirmed offline (issue 16, last review), each seen as
# `http://publications.europa.eu/resource/authority/licence/<code>` in published third-party copies of the
# table: a CKAN extension's DCAT-AP vocabulary module (every code here but EUPL_1_2) and a project's
# SPDX-to-EU licence map (EUPL_1_2). A code added to EU_LICENCES must be confirmed and added here first.
CONFIRMED_EU_CODES = {"CC0", "CC_BY_4_0", "CC_BYSA_4_0", "CC_BYNC_4_0", "CC_BYND_4_0", "CC_BYNCSA_4_0",
                      "CC_BYNCND_4_0", "ODC_BL", "ODC_BY", "ODC_PDDL", "OGL_3_0", "GNU_FDL_1_3", "EUPL_1_2"}


def test_every_eu_code_was_confirmed() -> None:
    assert set(licences.EU_LICENCES.values()) <= CONFIRMED_EU_CODES


def test_etalab_points_to_spdx_until_an_eu_code_is_confirmed() -> None:
    assert licences.licence_iri("etalab-2.0") == "https://spdx.org/licenses/etalab-2.0"
    assert licences.words("etalab-2.0").startswith("Licence Ouverte")


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


# ADMS licence-type kinds confirmed offline in a published list of the vocabulary's concepts (a national
# DCAT-AP guide listing http://purl.org/adms/licencetype/<kind>).
CONFIRMED_ADMS_KINDS = {"Attribution", "PublicDomain", "ViralEffect-ShareAlike", "NonCommercialUseOnly",
                        "NoDerivativeWork"}


@pytest.mark.parametrize("spdx_id,kinds", sorted(licences.LICENCE_TYPES.items()))
def test_licence_type_entry(spdx_id: str, kinds: tuple[str, ...]) -> None:
    assert check_expression(spdx_id) == spdx_id
    assert kinds and set(kinds) <= CONFIRMED_ADMS_KINDS and set(kinds) <= set(licences.LICENCE_TYPE_LABELS)
    assert licences.licence_types(licences.choose(spdx_id)) == tuple(licences.ADMS_LICENCE_TYPE + k for k in kinds)


def test_every_eu_licence_has_a_type() -> None:
    assert set(licences.EU_LICENCES) <= set(licences.LICENCE_TYPES)


def test_licence_types_of_expressions() -> None:
    t = licences.ADMS_LICENCE_TYPE
    assert licences.licence_types(licences.choose("MIT OR CC0-1.0")) == (t + "PublicDomain",)  # the chosen one
    assert licences.licence_types(licences.choose("CC-BY-4.0 AND ODbL-1.0")) == (
        t + "Attribution", t + "ViralEffect-ShareAlike")  # both apply
    assert licences.licence_types(licences.choose("CC-BY-4.0 AND LicenseRef-x")) == ()  # one unknown: none
    assert licences.licence_types(licences.choose("LicenseRef-coop")) == ()
    assert licences.licence_types(licences.choose("GPL-2.0-or-later WITH Classpath-exception-2.0")) == ()
