"""The DCAT-AP 3.0.1 graph of one catalog page, built from plain data (no I/O, no clock).

What each resource carries, and why (the shapes are ../shared/dcat-ap/dcat-ap-3.0.1-SHACL.ttl):

- `dcat:Catalog` `<base>/catalog`: title, description, publisher (a `foaf:Agent` from `[public]`, with its
  ADMS `dct:type` when `publisher_type` is set), homepage, issued/modified (the oldest/newest version listed
  anywhere in the catalog), the licence of its metadata and its language when the operator set them
  (`[public] licence`, `language`), its datasets of this page.
- One `dcat:Dataset` per dataset *version*, IRI `<base>/datasets/<manifest id>`: the manifest id is
  immutable, so a harvester never sees a record change under the same IRI. `dct:identifier` is the CID,
  `dcat:version` the version number, `dcat:previousVersion` the version before (when public here),
  `dcat:hasCurrentVersion` the latest public version of the same dataset. Title, description (an empty
  one becomes a sentence saying so: the profile requires one), keywords, publisher, issued = modified =
  the manifest's creation time, contact point, landing page (the human page).
- One `dcat:Distribution` per file, IRI `<base>/datasets/<id>#file-<n>`: access and download URL on the
  gateway, byte size, IANA media type, licence (licences.py decides the one `dct:license`, typed with the
  ADMS licence types of its terms where known), issued = modified = the version's time, the full SPDX
  expression as `dct:rights` when it is more than one id, and an `spdx:checksum` (SHA-256 of the whole
  file, `spdx:checksumAlgorithm_sha256`) once the node has computed it from the stored bytes, verified
  chunk by chunk (checksums.py; DCAT-AP allows one checksum, and SHA-256 is what `sha256sum` and
  harvesters check). Until then the distribution has no checksum: never one for unverified bytes.
- Copies: DCAT-AP has no property for how many nodes keep a dataset, so the figure the federation knows
  (live, unrefuted holding claims: the `copies` of `communs whereis`) is stated with W3C's Data Quality
  Vocabulary, which DCAT points to for quality information: a `dqv:QualityMeasurement` of the metric
  `<base>/#metric-copies` on the dataset, with `prov:generatedAtTime` (the figure changes, the dataset
  record does not). The profile's shapes do not constrain DQV; harvesters that do not know it skip it.
- Every object the shapes constrain by class carries its `rdf:type` in the graph (licence documents,
  media types, agents, documents, checksum algorithms), since a harvester or validator reads only what
  it is given.
- Paging: the page resource is a `hydra:PartialCollectionView` with `hydra:first`, `hydra:last`, and
  `hydra:next`/`hydra:previous` where they exist, plus `hydra:totalItems` on the catalog, the form
  ckanext-dcat and data.gouv.fr follow; it is also typed `hydra:PagedCollection` with the older
  `hydra:nextPage`/`firstPage`/`lastPage`/`itemsPerPage`, which both harvesters also read.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from communs.node.http.public import filetypes, licences, vocab
from communs.node.http.public.files import PublicFile, PublicVersion, content_type
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCTERMS, FOAF, PROV, RDF, RDFS, SKOS, XSD

DCAT = Namespace("http://www.w3.org/ns/dcat#")  # rdflib's DCAT is DCAT 2, without version links
HYDRA = Namespace("http://www.w3.org/ns/hydra/core#")
SPDX = Namespace("http://spdx.org/rdf/terms#")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
DQV = Namespace("http://www.w3.org/ns/dqv#")
IANA = "https://www.iana.org/assignments/media-types/"
SHA256_ALGORITHM = SPDX["checksumAlgorithm_sha256"]
Checksums = Callable[[PublicFile], str | None]  # a file's hex SHA-256, or None while not computed


@dataclass(frozen=True)
class CatalogMeta:
    """The catalog's own description, from `[public]` in config.toml."""

    base_url: str  # absolute, no trailing slash
    title: str
    description: str
    publisher_name: str
    homepage: str = ""
    contact_email: str = ""
    own_peer_id: str = ""  # versions published by this node get `publisher_name` as their publisher
    publisher_type: str = ""  # an ADMS publisher type kind (vocab.py), or none
    licence: str = ""  # the SPDX licence of the catalog's own metadata, or none
    language: str = ""  # the EU language code of the catalog's descriptions, or none


@dataclass(frozen=True)
class Page:
    number: int  # 1-based
    count: int  # pages in all (at least 1)
    total_items: int
    url: Callable[[int], str]  # the absolute URL of page N in the format being answered
    per_page: int = 0


def dataset_iri(meta: CatalogMeta, version_id: str) -> URIRef:
    return URIRef(f"{meta.base_url}/datasets/{version_id}")


def download_url(meta: CatalogMeta, version_id: str, path: str) -> str:
    return f"{meta.base_url}/datasets/{version_id}/files/{urllib.parse.quote(path, safe='/')}"


def _when(ts: int) -> Literal:
    return Literal(datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), datatype=XSD.dateTime)


def _agent(g: Graph, meta: CatalogMeta, peer_id: str) -> URIRef:
    if not peer_id or peer_id == meta.own_peer_id:
        agent = URIRef(f"{meta.base_url}/#publisher")
        name = meta.publisher_name
    else:
        agent = URIRef(f"{meta.base_url}/publishers/{peer_id}")
        name = f"Communs node {peer_id}"
    g.add((agent, RDF.type, FOAF.Agent))
    g.add((agent, FOAF.name, Literal(name)))
    if agent.endswith("#publisher") and meta.homepage:
        home = URIRef(meta.homepage)
        g.add((agent, FOAF.homepage, home))
        g.add((home, RDF.type, FOAF.Document))
    if agent.endswith("#publisher") and meta.publisher_type in vocab.PUBLISHER_TYPES:
        kind = URIRef(vocab.ADMS_PUBLISHER_TYPE + meta.publisher_type)
        g.add((agent, DCTERMS.type, kind))
        g.add((kind, RDF.type, SKOS.Concept))
        g.add((kind, SKOS.prefLabel, Literal(vocab.PUBLISHER_TYPES[meta.publisher_type], lang="en")))
    return agent


def _licence(g: Graph, dist: URIRef, expression: str) -> None:
    """`dct:license` (and `dct:rights` for an expression) of a distribution, or of the catalog itself."""
    choice = licences.choose(expression)
    doc: URIRef | BNode = URIRef(choice.iri) if choice.iri else BNode()
    g.add((dist, DCTERMS.license, doc))
    g.add((doc, RDF.type, DCTERMS.LicenseDocument))
    for kind in licences.licence_types(choice):
        g.add((doc, DCTERMS.type, URIRef(kind)))
        g.add((URIRef(kind), RDF.type, SKOS.Concept))
        label = licences.LICENCE_TYPE_LABELS[kind.removeprefix(licences.ADMS_LICENCE_TYPE)]
        g.add((URIRef(kind), SKOS.prefLabel, Literal(label, lang="en")))
    if choice.iri is None:
        g.add((doc, DCTERMS.title, Literal(choice.title)))
        g.add((doc, RDFS.label, Literal(choice.title)))
        for spdx_id in choice.needs:
            iri = licences.licence_iri(spdx_id)
            if iri:
                g.add((doc, RDFS.seeAlso, URIRef(iri)))
    if choice.rights is not None:
        rights = BNode()
        g.add((dist, DCTERMS.rights, rights))
        g.add((rights, RDF.type, DCTERMS.RightsStatement))
        g.add((rights, RDFS.label, Literal(f"SPDX licence expression: {choice.rights}")))


def _distribution(g: Graph, meta: CatalogMeta, v: PublicVersion, n: int, f: PublicFile,
                  sha256: str | None) -> URIRef:
    dist = URIRef(f"{dataset_iri(meta, v.id)}#file-{n}")
    url = URIRef(download_url(meta, v.id, f.path))
    g.add((dist, RDF.type, DCAT.Distribution))
    g.add((dist, DCTERMS.title, Literal(f.path)))
    g.add((dist, DCAT.accessURL, url))
    g.add((dist, DCAT.downloadURL, url))
    g.add((dist, DCAT.byteSize, Literal(f.size, datatype=XSD.nonNegativeInteger)))
    media = URIRef(IANA + content_type(f.path).split(";")[0])
    g.add((dist, DCAT.mediaType, media))
    g.add((media, RDF.type, DCTERMS.MediaType))
    fmt = filetypes.format_iri(f.path)
    if fmt is not None:
        g.add((dist, DCTERMS.format, URIRef(fmt)))
        g.add((URIRef(fmt), RDF.type, DCTERMS.MediaTypeOrExtent))
    g.add((dist, DCTERMS.description, Literal(f"The file {f.path} of {v.title or v.id}, version {v.version}.")))
    g.add((dist, DCTERMS.issued, _when(v.created)))
    g.add((dist, DCTERMS.modified, _when(v.created)))  # a version's files never change after it is signed
    _licence(g, dist, v.licence)
    if sha256 is not None:
        checksum = BNode()
        g.add((dist, SPDX.checksum, checksum))
        g.add((checksum, RDF.type, SPDX.Checksum))
        g.add((checksum, SPDX.algorithm, SHA256_ALGORITHM))
        g.add((SHA256_ALGORITHM, RDF.type, SPDX.ChecksumAlgorithm))
        g.add((checksum, SPDX.checksumValue, Literal(sha256.lower(), datatype=XSD.hexBinary)))
    return dist


def _copies(g: Graph, meta: CatalogMeta, ds: URIRef, copies: int, at: int) -> None:
    """The number of copies as a DQV quality measurement of the dataset (see the module docstring)."""
    metric = URIRef(f"{meta.base_url}/#metric-copies")
    g.add((metric, RDF.type, DQV.Metric))
    g.add((metric, SKOS.prefLabel, Literal("Copies in the federation", lang="en")))
    g.add((metric, SKOS.definition, Literal(
        "How many nodes of the Communs federation hold this dataset version complete, as this node knows "
        "from their signed, unexpired holding claims, leaving out holders that failed a proof-of-holding "
        "challenge.", lang="en")))
    g.add((metric, DQV.expectedDataType, XSD.nonNegativeInteger))
    measurement = BNode()
    g.add((ds, DQV.hasQualityMeasurement, measurement))
    g.add((measurement, RDF.type, DQV.QualityMeasurement))
    g.add((measurement, DQV.isMeasurementOf, metric))
    g.add((measurement, DQV.computedOn, ds))
    g.add((measurement, DQV.value, Literal(copies, datatype=XSD.nonNegativeInteger)))
    g.add((measurement, PROV.generatedAtTime, _when(at)))


def add_dataset(g: Graph, meta: CatalogMeta, v: PublicVersion, *, previous: str | None = None,
                current: str | None = None, checksums: Checksums | None = None,
                copies: tuple[int, int] | None = None) -> URIRef:
    """The triples of one dataset version; `previous`/`current`: ids of public versions to link;
    `checksums`: the SHA-256 known for a file; `copies`: (copies known, as of when)."""
    ds = dataset_iri(meta, v.id)
    g.add((ds, RDF.type, DCAT.Dataset))
    g.add((ds, DCTERMS.title, Literal(v.title or f"Dataset {v.dataset}")))
    description = v.description.strip() or f"{v.title or 'This dataset'} (its publisher gave no description)."
    g.add((ds, DCTERMS.description, Literal(description)))
    g.add((ds, DCTERMS.identifier, Literal(v.id)))
    g.add((ds, DCAT.version, Literal(str(v.version))))
    for kw in v.keywords:
        if kw.strip():
            g.add((ds, DCAT.keyword, Literal(kw)))
    g.add((ds, DCTERMS.publisher, _agent(g, meta, v.publisher)))
    g.add((ds, DCTERMS.issued, _when(v.created)))
    g.add((ds, DCTERMS.modified, _when(v.created)))
    page = URIRef(f"{meta.base_url}/datasets/{v.id}")
    g.add((ds, DCAT.landingPage, page))
    g.add((page, RDF.type, FOAF.Document))
    if meta.contact_email or meta.homepage:
        contact = URIRef(f"{meta.base_url}/#contact")
        g.add((ds, DCAT.contactPoint, contact))
        g.add((contact, RDF.type, VCARD.Kind))
        g.add((contact, VCARD.fn, Literal(meta.publisher_name)))
        if meta.contact_email:
            g.add((contact, VCARD.hasEmail, URIRef("mailto:" + meta.contact_email)))
        if meta.homepage:
            g.add((contact, VCARD.hasURL, URIRef(meta.homepage)))
    if previous:
        g.add((ds, DCAT.previousVersion, dataset_iri(meta, previous)))
    if current and current != v.id:
        g.add((ds, DCAT.hasCurrentVersion, dataset_iri(meta, current)))
    for n, f in enumerate(v.files):
        g.add((ds, DCAT.distribution, _distribution(g, meta, v, n, f, checksums(f) if checksums else None)))
    if copies is not None:
        _copies(g, meta, ds, *copies)
    return ds


def catalog_graph(meta: CatalogMeta, versions: Sequence[PublicVersion], page: Page, *,
                  all_ids: frozenset[str] = frozenset(), latest: dict[str, str] | None = None,
                  modified: int | None = None, issued: int | None = None, checksums: Checksums | None = None,
                  copies: dict[str, int] | None = None, copies_at: int = 0) -> Graph:
    """The graph of one page: the catalog, `versions` (this page's), and the Hydra view.

    `all_ids`: every public version id (links to a previous version are made only to public ones);
    `latest`: dataset id -> its latest public version id;
    `modified`/`issued`: the newest/oldest creation time overall;
    `checksums`: a file's hex SHA-256 when known; `copies`: version id -> copies known at `copies_at`."""
    g = Graph()
    for prefix, ns in (("dcat", DCAT), ("dct", DCTERMS), ("dqv", DQV), ("foaf", FOAF), ("hydra", HYDRA),
                       ("prov", PROV), ("skos", SKOS), ("spdx", SPDX), ("vcard", VCARD)):
        g.bind(prefix, ns)
    cat = URIRef(f"{meta.base_url}/catalog")
    g.add((cat, RDF.type, DCAT.Catalog))
    g.add((cat, DCTERMS.title, Literal(meta.title)))
    g.add((cat, DCTERMS.description, Literal(meta.description)))
    g.add((cat, DCTERMS.publisher, _agent(g, meta, "")))
    if meta.homepage:
        home = URIRef(meta.homepage)
        g.add((cat, FOAF.homepage, home))
        g.add((home, RDF.type, FOAF.Document))
    if modified is not None:
        g.add((cat, DCTERMS.modified, _when(modified)))
    if issued is not None:
        g.add((cat, DCTERMS.issued, _when(issued)))
    if meta.licence:
        _licence(g, cat, meta.licence)
    if meta.language:
        language = URIRef(vocab.EU_LANGUAGE + meta.language)
        g.add((cat, DCTERMS.language, language))
        g.add((language, RDF.type, DCTERMS.LinguisticSystem))
    latest = latest or {}
    for v in versions:
        prev = v.prev if v.prev and v.prev in all_ids else None
        count = copies.get(v.id) if copies is not None else None
        ds = add_dataset(g, meta, v, previous=prev, current=latest.get(v.dataset), checksums=checksums,
                         copies=(count, copies_at) if count is not None else None)
        g.add((cat, DCAT.dataset, ds))
    view = URIRef(page.url(page.number))
    # Current Hydra terms, and the older PagedCollection ones beside them (both harvesters know both forms).
    g.add((view, RDF.type, HYDRA.PartialCollectionView))
    g.add((view, RDF.type, HYDRA.PagedCollection))
    links = [(HYDRA.first, HYDRA.firstPage, 1), (HYDRA.last, HYDRA.lastPage, page.count)]
    if page.number < page.count:
        links.append((HYDRA.next, HYDRA.nextPage, page.number + 1))
    if page.number > 1:
        links.append((HYDRA.previous, HYDRA.previousPage, page.number - 1))
    for new, old, n in links:
        g.add((view, new, URIRef(page.url(n))))
        g.add((view, old, URIRef(page.url(n))))
    g.add((view, HYDRA.totalItems, Literal(page.total_items, datatype=XSD.nonNegativeInteger)))
    if page.per_page:
        g.add((view, HYDRA.itemsPerPage, Literal(page.per_page, datatype=XSD.nonNegativeInteger)))
    g.add((cat, HYDRA.view, view))
    g.add((cat, HYDRA.totalItems, Literal(page.total_items, datatype=XSD.nonNegativeInteger)))
    return g


FORMATS = {"ttl": ("turtle", "text/turtle"), "jsonld": ("json-ld", "application/ld+json"),
           "rdf": ("xml", "application/rdf+xml")}


def negotiate(accept: str | None) -> str:
    """The format suffix for an Accept header: the first of Turtle, JSON-LD, RDF/XML it names by q-value;
    Turtle when it names none (a harvester that sends `*/*` gets what every harvester reads)."""
    best, best_q = "ttl", -1.0
    order = {"text/turtle": "ttl", "application/x-turtle": "ttl", "application/ld+json": "jsonld",
             "application/json": "jsonld", "application/rdf+xml": "rdf", "application/xml": "rdf",
             "text/xml": "rdf"}
    for n, part in enumerate((accept or "").split(",")[:32]):
        bits = [b.strip() for b in part.split(";")]
        kind = bits[0].lower()
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if kind in order and q > 0 and q - n * 1e-6 > best_q:
            best, best_q = order[kind], q - n * 1e-6
    return best


def serialize(g: Graph, suffix: str) -> bytes:
    fmt, _ = FORMATS[suffix]
    data = g.serialize(format=fmt, encoding="utf-8")
    return data if isinstance(data, bytes) else data.encode("utf-8")


__all__ = ["FORMATS", "CatalogMeta", "Page", "add_dataset", "catalog_graph", "dataset_iri", "download_url",
           "negotiate", "serialize"]
