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
    "etalab-2.0": "ETALAB_2_0",
    "EUPL-1.2": "EUPL_1_2",
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


__all__ = ["EU_AUTHORITY", "EU_LICENCES", "SPDX_BASE", "WORDS", "LicenceChoice", "choose", "licence_iri", "words"]
