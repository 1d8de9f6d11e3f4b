"""Licence expressions: is a dataset's SPDX expression satisfiable under a policy's lists?

Parsing is `license-expression`'s, against the SPDX list it vendors (`get_spdx_licensing()`);
only the evaluation of the parsed tree is ours, because the question asked here ("can this be
satisfied with accepted licences alone, never requiring a refused one?") is not one the
library answers.

Decisions, so that two nodes with the same policy always agree:

- Ids are matched case-insensitively (`cc-by-4.0` is `CC-BY-4.0`) and shown in their SPDX case.
- Deprecated SPDX ids that SPDX replaced one for one are read as their replacement:
  `GPL-2.0` is `GPL-2.0-only`, `GPL-2.0+` is `GPL-2.0-or-later`, `LGPL-2.1` is `LGPL-2.1-only`.
  So a policy accepting `GPL-2.0` accepts a dataset under `GPL-2.0-only` and the other way
  round. `-only` and `-or-later` stay distinct licences: a policy must list the one it accepts.
  Deprecated ids with an exception folded in (`GPL-2.0-with-classpath-exception`) stay their
  own ids, since SPDX did not give them a single replacement id.
- `LicenseRef-<idstring>` ids are syntactically allowed anywhere and are accepted only when a
  policy lists them. The vendored index maps some `LicenseRef-` names and some space-separated
  names onto SPDX ids (`LicenseRef-MIT-Bootstrap` onto `MIT`, `GPL 2.0` onto `GPL-2.0-only`);
  those aliases are dropped here, so a `LicenseRef-` id never silently becomes a listed SPDX
  licence and an expression is read as SPDX writes it.
- `A WITH EXC` needs `A`; the exception only widens what `A` allows. Exceptions must be SPDX
  exception ids; they cannot appear alone or in a policy's lists.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from license_expression import (
    AND,
    OR,
    ExpressionError,
    LicenseSymbol,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)

from .errors import LicenceError

__all__ = ["MAX_EXPRESSION_CHARS", "LicenceError", "check_expression", "check_id", "satisfiable"]

MAX_EXPRESSION_CHARS = 1000
_IDSTRING = re.compile(r"[A-Za-z0-9.\-]+\+?")
_LICENSEREF = re.compile(r"licenseref-([A-Za-z0-9.\-]+)", re.IGNORECASE)


@functools.cache
def _licensing() -> Licensing:
    """The SPDX licensing of the library, without the aliases that would rename ids (see module doc)."""
    base = get_spdx_licensing()
    symbols = []
    for sym in {id(s): s for s in base.known_symbols.values()}.values():
        aliases = tuple(
            a for a in sym.aliases
            if _IDSTRING.fullmatch(a) and not a.lower().startswith("licenseref-")
        )
        symbols.append(LicenseSymbol(sym.key, aliases=aliases, is_exception=sym.is_exception,
                                     is_deprecated=getattr(sym, "is_deprecated", False)))
    return Licensing(symbols)


def _known() -> dict[str, Any]:
    known: dict[str, Any] = _licensing().known_symbols
    return known


@functools.cache
def _known_lower() -> dict[str, Any]:
    return {key.lower(): sym for key, sym in _known().items()}


def _resolve_licence(key: str) -> str:
    """The canonical id of one licence symbol key, or LicenceError."""
    sym = _known_lower().get(key.lower())
    if sym is not None:
        if sym.is_exception:
            raise LicenceError(f"{sym.key} is a licence exception and can only follow WITH")
        return str(sym.key)
    match = _LICENSEREF.fullmatch(key)
    if match:
        return "LicenseRef-" + match.group(1)
    raise LicenceError(f"unknown licence id {key!r} (not on the SPDX list and not a LicenseRef-)")


def _parse(text: str) -> Any:
    """The parsed expression tree with every symbol canonical, or LicenceError."""
    if not isinstance(text, str):
        raise LicenceError("a licence expression must be text")
    return _parse_text(text)


@functools.lru_cache(maxsize=8192)
def _parse_text(text: str) -> Any:
    """Cached: a policy change re-evaluates every known manifest, and most share a few licences.

    The trees are never modified after parsing; errors are not cached (they raise).
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise LicenceError(f"licence expression is longer than {MAX_EXPRESSION_CHARS} characters")
    if not text.strip():
        raise LicenceError("licence expression is empty")
    lic = _licensing()
    try:
        expr = lic.parse(text, validate=False, strict=True)
    except ExpressionError as exc:
        raise LicenceError(f"licence expression {text!r} is invalid: {_first_sentence(exc)}") from exc
    except Exception as exc:  # the library raises assorted errors on odd input
        raise LicenceError(f"licence expression {text!r} is invalid") from exc
    if expr is None:
        raise LicenceError("licence expression is empty")
    return _canonical_tree(expr, text)


def _first_sentence(exc: Exception) -> str:
    msg = str(exc).strip().rstrip(".")
    return msg.split(" for token:")[0] if msg else "it cannot be parsed"


def _canonical_tree(expr: Any, text: str) -> Any:
    lic = _licensing()
    if isinstance(expr, LicenseWithExceptionSymbol):
        exc_key = expr.exception_symbol.key
        exc_sym = _known_lower().get(exc_key.lower())
        if exc_sym is None or not exc_sym.is_exception:
            raise LicenceError(f"unknown licence exception {exc_key!r} after WITH")
        lic_sym = LicenseSymbol(_resolve_licence(expr.license_symbol.key))
        return LicenseWithExceptionSymbol(lic_sym, LicenseSymbol(exc_sym.key, is_exception=True))
    if isinstance(expr, LicenseSymbol):
        if " " in expr.key:
            raise LicenceError(f"licence expression {text!r} is invalid: {expr.key!r} is not one licence id")
        return LicenseSymbol(_resolve_licence(expr.key))
    if isinstance(expr, AND | OR):
        args = [_canonical_tree(a, text) for a in expr.args]
        return lic.AND(*args) if isinstance(expr, AND) else lic.OR(*args)
    raise LicenceError(f"licence expression {text!r} is invalid")


def check_expression(text: str) -> str:
    """The normalised text of a licence expression; LicenceError if it is invalid or names an unknown id."""
    return str(_parse(text).render())


def check_id(text: str) -> str:
    """The canonical form of one licence id, as listed in a policy; LicenceError for anything else."""
    if not isinstance(text, str):
        raise LicenceError("a licence id must be text")
    if not _IDSTRING.fullmatch(text):
        raise LicenceError(f"{text!r} is not a single licence id")
    return _canonical_id(text)


@functools.lru_cache(maxsize=4096)
def _canonical_id(text: str) -> str:
    expr = _parse(text)
    if not isinstance(expr, LicenseSymbol) or isinstance(expr, LicenseWithExceptionSymbol):
        raise LicenceError(f"{text!r} is not a single licence id")
    return str(expr.key)


def _keys(ids: Iterable[str]) -> frozenset[str]:
    """Comparison keys of a policy list: canonical ids, casefolded (LicenseRef- ids too)."""
    out = set()
    for item in ids:
        if not isinstance(item, str):
            continue
        try:
            out.add(_canonical_id(item).lower())
        except LicenceError:
            continue  # an unusable entry can accept or refuse nothing
    return frozenset(out)


def _evaluate(expr: Any, accepted: frozenset[str], refused: frozenset[str]) -> tuple[bool, list[str], str]:
    """(satisfied, licences chosen, reason it fails) for one subtree.

    For OR the first satisfiable alternative is chosen, in the order written, so the reason
    shown is stable.
    """
    if isinstance(expr, LicenseWithExceptionSymbol):
        return _evaluate(expr.license_symbol, accepted, refused)
    if isinstance(expr, LicenseSymbol):
        key = str(expr.key)
        if key.lower() in refused:
            return False, [], f"licence {key} is refused by the policy in force"
        if key.lower() not in accepted:
            return False, [], f"licence {key} is not accepted by the policy in force"
        return True, [key], ""
    chosen: list[str] = []
    if isinstance(expr, AND):
        for arg in expr.args:
            ok, sub, why = _evaluate(arg, accepted, refused)
            if not ok:
                return False, [], why
            chosen += [c for c in sub if c not in chosen]
        return True, chosen, ""
    if isinstance(expr, OR):
        reasons = []
        for arg in expr.args:
            ok, sub, why = _evaluate(arg, accepted, refused)
            if ok:
                return True, sub, ""
            reasons.append(why)
        return False, [], "no alternative is acceptable: " + "; ".join(reasons)
    return False, [], "licence expression cannot be evaluated"


def satisfiable(expression: str, accepted: Iterable[str], refused: Iterable[str]) -> tuple[bool, str]:
    """Whether `expression` can be satisfied with `accepted` licences alone, requiring no `refused` one.

    Returns (answer, reason in words). An invalid or unknown expression is never satisfiable.
    A licence in both lists counts as refused ("never accepted, whatever else says").
    """
    try:
        expr = _parse(expression)
    except LicenceError as exc:
        return False, str(exc)
    ok, chosen, why = _evaluate(expr, _keys(accepted), _keys(refused))
    if not ok:
        return False, why
    if len(chosen) == 1:
        return True, f"licence {chosen[0]} is accepted by the policy in force"
    return True, f"licences {', '.join(chosen[:-1])} and {chosen[-1]} are accepted by the policy in force"
