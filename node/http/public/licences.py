"""SPDX licence expressions as harvesters read them: one `dct:license` resource per distribution.

DCAT-AP 3.0.1 allows at most one `dct:license` on a distribution, and it must be a resource typed
`dct:LicenseDocument`; CKAN's ckanext-dcat and data.gouv.fr match licences by *known URL*. So each
SPDX id maps to the EU Publications Office licence authority IRI where one exists (`EU_LICENCES`,
the one table of this module, each entry tested), else to `https://spdx.org/licenses/<id>`.

An expression is more than one id; the decision (`choose`), so that a harvester always sees a licence:

- `A`: A's IRI.
- `A WITH EXC`: A's IRI. The exception only widens what A allows, so A's terms are the floor a reuser
  may rely on.
- `A OR B ...`: the reuser may pick any alternative, so the licence shown is one of them: the first
  whose IRI is in the EU authority (what portals match best), else the first that maps to one IRI.
- `A AND B` (or an alternative that needs several licences at once): no single known IRI states it, so
  the licence is a blank `dct:LicenseDocument` titled with the whole expression (harvesters show the
  title), and each licence it needs is linked with `rdfs:seeAlso`.
- Always, when the expression is not one plain id, the distribution also gets a `dct:rights`
  statement carrying the full SPDX expression, so nothing of the publisher's terms is lost.
- `LicenseRef-...` ids have no public IRI: they count as "needs a title", like AND.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

EU_AUTHORITY = "http://publications.europa.eu/resource/authority/licence/"
SPDX_BASE = "https://spdx.org/licenses/"

# SPDX id -> code in the EU Publications Office licence authority table (IRI = EU_AUTHORITY + code).
# `-or-later` ids map to the named version: a reuser may always use that version's terms.
# Only codes seen in published copies of the authority table are listed (test_licences.py says where):
# `etalab-2.0` is not, as no `ETALAB_2_0` (or other Etalab code) could be confirmed offline, so it
# points to its SPDX page, a URL that certainly exists, rather than to an IRI that might not.
EU_LICENCES: dict[str, str] = {
    "CC0-1.0": "CC0",
    "CC-BY-4.0": "CC_BY_4_0",
    "CC-BY-SA-4.0": "CC_BYSA_4_0",
    "CC-BY-NC-4.0": "CC_BYNC_4_0",
    "CC-BY-ND-4.0": "CC_BYND_4_0",
    "CC-BY-NC-SA-4.0": "CC_BYNCSA_4_0",
    "CC-BY-NC-ND-4.0": "CC_BYNCND_4_0",
    "ODbL-1.0": "ODC_BL",
    "ODC-By-1.0": "ODC_BY",
    "PDDL-1.0": "ODC_PDDL",
    "OGL-UK-3.0": "OGL_3_0",
    "GFDL-1.3-only": "GNU_FDL_1_3",
    "GFDL-1.3-or-later": "GNU_FDL_1_3",
    "EUPL-1.2": "EUPL_1_2",
}

# SPDX id -> its kinds in the ADMS licence-type vocabulary (`dct:type` of the licence document; IRI =
# ADMS_LICENCE_TYPE + kind), facts about each licence's terms. The kinds used were confirmed offline in
# published lists of the vocabulary (test_licences.py). Ids not listed get no type (not guessed).
ADMS_LICENCE_TYPE = "http://purl.org/adms/licencetype/"
_BY, _SA, _NC, _ND, _PD = "Attribution", "ViralEffect-ShareAlike", "NonCommercialUseOnly", "NoDerivativeWork", \
    "PublicDomain"
LICENCE_TYPE_LABELS = {_BY: "Attribution", _SA: "Viral effect (share-alike)", _NC: "Non-commercial use only",
                       _ND: "No derivative work", _PD: "Public domain"}  # skos:prefLabel (the shapes want one)
LICENCE_TYPES: dict[str, tuple[str, ...]] = {
    "CC0-1.0": (_PD,),
    "PDDL-1.0": (_PD,),
    "CC-BY-4.0": (_BY,),
    "CC-BY-SA-4.0": (_BY, _SA),
    "CC-BY-NC-4.0": (_BY, _NC),
    "CC-BY-ND-4.0": (_BY, _ND),
    "CC-BY-NC-SA-4.0": (_BY, _NC, _SA),
    "CC-BY-NC-ND-4.0": (_BY, _NC, _ND),
    "ODbL-1.0": (_BY, _SA),
    "ODC-By-1.0": (_BY,),
    "OGL-UK-3.0": (_BY,),
    "GFDL-1.3-only": (_BY, _SA),
    "GFDL-1.3-or-later": (_BY, _SA),
    "etalab-2.0": (_BY,),
    "EUPL-1.2": (_BY, _SA),
    "MIT": (_BY,),
    "Apache-2.0": (_BY,),
}

# Names in words for the human catalog page, for the ids people meet most; others show their SPDX id.
WORDS: dict[str, str] = {
    "CC0-1.0": "Creative Commons Zero 1.0 (public domain dedication)",
    "CC-BY-4.0": "Creative Commons Attribution 4.0",
    "CC-BY-SA-4.0": "Creative Commons Attribution-ShareAlike 4.0",
    "CC-BY-NC-4.0": "Creative Commons Attribution-NonCommercial 4.0",
    "CC-BY-ND-4.0": "Creative Commons Attribution-NoDerivatives 4.0",
    "CC-BY-NC-SA-4.0": "Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
    "CC-BY-NC-ND-4.0": "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0",
    "ODbL-1.0": "Open Data Commons Open Database License 1.0",
    "ODC-By-1.0": "Open Data Commons Attribution License 1.0",
    "PDDL-1.0": "Open Data Commons Public Domain Dedication and License 1.0",
    "OGL-UK-3.0": "Open Government Licence 3.0 (UK)",
    "GFDL-1.3-only": "GNU Free Documentation License 1.3",
    "GFDL-1.3-or-later": "GNU Free Documentation License 1.3 or later",
    "etalab-2.0": "Licence Ouverte / Open Licence 2.0 (Etalab)",
    "EUPL-1.2": "European Union Public Licence 1.2",
    "MIT": "MIT License",
    "Apache-2.0": "Apache License 2.0",
}


def licence_iri(spdx_id: str) -> str | None:
    """The IRI of one licence id: EU authority, else SPDX's page; None for a `LicenseRef-` id."""
    if spdx_id.lower().startswith("licenseref-"):
        return None
    code = EU_LICENCES.get(spdx_id)
    return EU_AUTHORITY + code if code else SPDX_BASE + spdx_id


def words(spdx_id: str) -> str:
    return WORDS.get(spdx_id, spdx_id)


def licence_types(choice: LicenceChoice) -> tuple[str, ...]:
    """The ADMS licence-type IRIs of the licence `choice` states: the chosen id's kinds; for a titled
    licence that needs several ids at once (AND), every kind any of them has (all their terms apply).
    Empty when a licence involved has no known kind (a `LicenseRef-`, an id not in LICENCE_TYPES)."""
    ids = choice.needs if choice.iri is None else tuple(i for i in choice.ids if licence_iri(i) == choice.iri)[:1]
    if not ids or any(i not in LICENCE_TYPES for i in ids) or (choice.iri is None and len(ids) < len(choice.ids)):
        return ()
    out: list[str] = []
    for i in ids:
        out.extend(ADMS_LICENCE_TYPE + k for k in LICENCE_TYPES[i] if ADMS_LICENCE_TYPE + k not in out)
    return tuple(out)


@dataclass(frozen=True)
class LicenceChoice:
    """What the export states for one expression.

    `iri`: the `dct:license` IRI, or None for a titled blank licence document (`title`, linking `needs`).
    `rights`: the full expression for a `dct:rights` statement, or None when the expression is one id.
    `ids`: every licence id the expression names (for the human page's links)."""

    expression: str
    iri: str | None
    title: str
    needs: tuple[str, ...]
    rights: str | None
    ids: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def _licensing() -> Any:
    """Building the SPDX index takes tens of milliseconds: once per process."""
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def _tree(expression: str) -> Any:
    return _licensing().parse(expression, validate=False, strict=False)


def _ids(node: Any) -> list[str]:
    kind = type(node).__name__
    if kind == "LicenseWithExceptionSymbol":
        return [str(node.license_symbol.key)]
    if kind == "LicenseSymbol":
        return [str(node.key)]
    out: list[str] = []
    for arg in getattr(node, "args", ()):
        out.extend(i for i in _ids(arg) if i not in out)
    return out


def _single(node: Any) -> str | None:
    """The one licence id a reuser may rely on alone under `node`, or None when it needs several."""
    kind = type(node).__name__
    if kind == "LicenseWithExceptionSymbol":
        return str(node.license_symbol.key)
    if kind == "LicenseSymbol":
        return str(node.key)
    if kind == "OR":
        options = [s for s in (_single(a) for a in node.args) if s is not None and licence_iri(s) is not None]
        eu = [s for s in options if s in EU_LICENCES]
        pick = eu or options
        return pick[0] if pick else None
    return None


@functools.lru_cache(maxsize=4096)
def choose(expression: str) -> LicenceChoice:
    """The licence resource and rights statement for `expression` (see the module docstring)."""
    text = expression.strip()
    try:
        tree = _tree(text)
    except Exception:  # a replicated manifest may carry text license-expression cannot parse
        tree = None
    if tree is None:
        return LicenceChoice(text, None, text or "unknown licence", (), text or None, ())
    ids = tuple(_ids(tree))
    plain = type(tree).__name__ == "LicenseSymbol"
    single = _single(tree)
    iri = licence_iri(single) if single is not None else None
    rights = None if plain and iri is not None else text
    needs = tuple(i for i in ids if licence_iri(i) is not None) if iri is None else ()
    return LicenceChoice(text, iri, text, needs, rights, ids)


__all__ = ["ADMS_LICENCE_TYPE", "EU_AUTHORITY", "EU_LICENCES", "LICENCE_TYPES", "LICENCE_TYPE_LABELS", "SPDX_BASE",
           "WORDS", "LicenceChoice", "choose", "licence_iri", "licence_types", "words"]
