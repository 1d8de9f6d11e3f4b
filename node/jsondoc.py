"""The type of the JSON documents the node builds and reads (API answers, status parts, job reports).

A JSON document is heterogeneous by nature, so its values are `Any`; this alias is the one place that
says so. The composition root and the services are checked with `disallow_any_explicit` (pyproject.toml):
everything else they hold is typed, and a JSON document is named for what it is.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JsonDict: TypeAlias = dict[str, Any]

# A row read with SQLite's default row factory, as `communs repair` salvages them from a damaged file: its
# columns are whatever the file held, checked by the code that reads them.
SqlRow: TypeAlias = tuple[Any, ...]
