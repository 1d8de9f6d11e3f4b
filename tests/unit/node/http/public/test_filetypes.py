from __future__ import annotations

import pytest
from communs.node.http.public.filetypes import FILE_TYPE, FORMATS, format_iri


@pytest.mark.parametrize("ext,code", sorted(FORMATS.items()))
def test_entry(ext: str, code: str) -> None:
    assert format_iri(f"dir/data.{ext}") == FILE_TYPE + code
    assert format_iri(f"DATA.{ext.upper()}") == FILE_TYPE + code
    assert code.isupper() or "_" in code


def test_unknown_or_no_extension() -> None:
    assert format_iri("README") is None
    assert format_iri("a.unknownext") is None
    assert format_iri("dir.csv/file") is None
