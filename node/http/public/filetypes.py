"""File name extension -> EU Publications Office file-type authority code, for `dct:format`.

Portals (data.gouv.fr, data.europa.eu) show and filter by this format; the IANA media type goes in
`dcat:mediaType` beside it. Only the common data formats are listed: a file whose extension is not here
gets no `dct:format` (DCAT-AP recommends it, it does not require it).
"""

from __future__ import annotations

FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/"

FORMATS: dict[str, str] = {
    "csv": "CSV",
    "json": "JSON",
    "geojson": "GEOJSON",
    "jsonld": "JSON_LD",
    "xml": "XML",
    "rdf": "RDF_XML",
    "ttl": "RDF_TURTLE",
    "pdf": "PDF",
    "zip": "ZIP",
    "gz": "GZIP",
    "tar": "TAR",
    "txt": "TXT",
    "html": "HTML",
    "xlsx": "XLSX",
    "xls": "XLS",
    "ods": "ODS",
    "parquet": "PARQUET",
    "gpkg": "GPKG",
    "png": "PNG",
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "tif": "TIFF",
    "tiff": "TIFF",
    "bin": "BIN",
}


def format_iri(path: str) -> str | None:
    """The file-type IRI for a file's name, by its last extension (case-insensitive), or None."""
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return None
    code = FORMATS.get(name.rsplit(".", 1)[-1].lower())
    return FILE_TYPE + code if code else None


__all__ = ["FILE_TYPE", "FORMATS", "format_iri"]
