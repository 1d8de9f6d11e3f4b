from __future__ import annotations

import pytest
from communs.node.http.public.filetypes import FILE_TYPE, FORMATS, format_iri


@pytest.mark.parametrize("ext,code", sorted(FORMATS.items()))
def test_entry(ext: str, code: str) -> None:
    assert format_iri(f"dir/data.{ext}") == FILE_TYPE + code
    assert format_iri(f"DATA.{ext.upper()}") == FILE_TYPE + code
    assert code.isupper() or "_" in code


# Codes of the EU file-type authority table confirmed offline (issue 16, last review), each seen as
# `http://publications.europa.eu/resource/authority/file-type/<code>` in published third-party copies of
# the table: a metadata editor's full list of the table's codes (all but PARQUET) and a CKAN extension's
# DCAT-AP vocabulary module (PARQUET, GPKG, GEOJSON, JSON_LD and others). Add a code here only once confirmed.
CONFIRMED_CODES = {"BIN", "CSV", "GEOJSON", "GPKG", "GZIP", "HTML", "JPEG", "JSON", "JSON_LD", "ODS", "PARQUET", "PDF",
                   "PNG", "RDF_TURTLE", "RDF_XML", "TAR", "TIFF", "TXT", "XLS", "XLSX", "XML", "ZIP"}


def test_every_code_was_confirmed() -> None:
    assert set(FORMATS.values()) <= CONFIRMED_CODES


def test_unknown_or_no_extension() -> None:
    assert format_iri("README") is None
    assert format_iri("a.unknownext") is None
    assert format_iri("dir.csv/file") is None
