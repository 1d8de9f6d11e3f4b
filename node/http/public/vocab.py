"""Controlled vocabularies the operator picks from in `[public]` (config.py checks the choice here).

- `publisher_type`: a kind of the ADMS publisher-type vocabulary, `dct:type` of the catalog's publisher.
  The kinds were confirmed offline in published lists of the vocabulary (CKAN's DCAT extension, national
  DCAT-AP guides).
- `language`: the language of the catalog's own descriptions, as a code of the EU Publications Office
  language authority table (three capital letters, e.g. FRA, ENG, DEU), `dct:language` of the catalog.
"""

from __future__ import annotations

import re

ADMS_PUBLISHER_TYPE = "http://purl.org/adms/publishertype/"
PUBLISHER_TYPES: dict[str, str] = {  # kind -> its name in words (skos:prefLabel)
    "Academia-ScientificOrganisation": "Academia / scientific organisation",
    "Company": "Company",
    "IndustryConsortium": "Industry consortium",
    "LocalAuthority": "Local authority",
    "NationalAuthority": "National authority",
    "NonGovernmentalOrganisation": "Non-governmental organisation",
    "NonProfitOrganisation": "Non-profit organisation",
    "PrivateIndividual(s)": "Private individual(s)",
    "RegionalAuthority": "Regional authority",
    "StandardisationBody": "Standardisation body",
    "SupraNationalAuthority": "Supra-national authority",
}
EU_LANGUAGE = "http://publications.europa.eu/resource/authority/language/"
_LANGUAGE = re.compile(r"^[A-Z]{3}$")


def publisher_type_problem(kind: str) -> str | None:
    """A sentence when `kind` is not a publisher type, else None ("" means none is stated)."""
    if not kind or kind in PUBLISHER_TYPES:
        return None
    return f"public.publisher_type must be one of {', '.join(sorted(PUBLISHER_TYPES))}, not '{kind}'"


def language_problem(code: str) -> str | None:
    if not code or _LANGUAGE.match(code):
        return None
    return f"public.language must be a three-letter EU language code in capitals such as FRA or ENG, not '{code}'"


__all__ = ["ADMS_PUBLISHER_TYPE", "EU_LANGUAGE", "PUBLISHER_TYPES", "language_problem", "publisher_type_problem"]
