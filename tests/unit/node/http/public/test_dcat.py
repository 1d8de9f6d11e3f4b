"""The DCAT-AP export: the same graph in three formats, zero SHACL violations on awkward data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from communs.node.http.public import dcat
from communs.node.http.public.files import PublicFile, PublicVersion
from rdflib import Graph, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCTERMS, RDF

DCAT = dcat.DCAT

SHAPES = Path(__file__).resolve().parents[5].parent / "shared" / "dcat-ap"
META = dcat.CatalogMeta(base_url="https://data.example.org", title="Coopérative des données",
                        description="Jeux de données ouverts", publisher_name="Coop Énergie",
                        homepage="https://coop.example.org/", contact_email="data@coop.example.org",
                        own_peer_id="12D3KooWown", publisher_type="NonProfitOrganisation", licence="CC0-1.0",
                        language="FRA")
D = b"\x01" * 32


def version(n: int, *, licence: str = "CC-BY-4.0", description: str = "d", title: str = "t",
            files: tuple[PublicFile, ...] = (), prev: str | None = None, dataset: str = "bdataset") -> PublicVersion:
    files = files or (PublicFile("data.csv", 3, ((D, 3),)),)
    return PublicVersion(id=f"bversion{n:04d}", dataset=dataset, version=n, title=title, description=description,
                         keywords=("énergie", "open data"), licence=licence, publisher="12D3KooWown",
                         created=1_700_000_000 + n, size=sum(f.size for f in files), files=files, prev=prev)


AWKWARD = [
    version(1, title="Données 🌍 «énergie»", description=""),
    version(2, licence="MIT OR CC0-1.0", prev="bversion0001"),
    version(3, licence="GPL-2.0-or-later WITH Classpath-exception-2.0"),
    version(4, licence="CC-BY-4.0 AND ODbL-1.0"),
    version(5, licence="LicenseRef-coop-1", files=(PublicFile("empty.bin", 0, ()),
                                                    PublicFile("dir/a b.csv", 5, ((D, 2), (D, 3))))),
    *(version(n, prev=f"bversion{n - 1:04d}", dataset="bmany") for n in range(6, 30)),
]


def known_sha256(f: PublicFile) -> str | None:
    """Checksums as the worker knows them: computed for every file but `dir/a b.csv`."""
    return None if f.path == "dir/a b.csv" else hashlib.sha256(f.path.encode()).hexdigest()


def page_graph(versions: list[PublicVersion], number: int = 1, count: int = 1) -> Graph:
    page = dcat.Page(number=number, count=count, total_items=len(versions),
                     url=lambda n: f"{META.base_url}/catalog.ttl?page={n}")
    return dcat.catalog_graph(META, versions, page, all_ids=frozenset(v.id for v in versions),
                              latest={"bmany": "bversion0029"}, modified=1_700_000_100,
                              issued=1_700_000_001, checksums=known_sha256,
                              copies={v.id: v.version % 4 for v in versions}, copies_at=1_700_000_200)


@pytest.mark.parametrize("suffix", ["ttl", "jsonld", "rdf"])
def test_each_format_parses_to_the_same_graph(suffix: str) -> None:
    g = page_graph(AWKWARD)
    data = dcat.serialize(g, suffix)
    back = Graph().parse(data=data, format=dcat.FORMATS[suffix][0])
    assert isomorphic(g, back)
    assert len(set(back.subjects(RDF.type, DCAT.Dataset))) == len(AWKWARD)


def test_validates_against_dcat_ap_3_0_1_with_zero_violations() -> None:
    pyshacl = pytest.importorskip("pyshacl")
    shapes = Graph().parse(SHAPES / "dcat-ap-3.0.1-SHACL.ttl", format="turtle")
    g = page_graph(AWKWARD, number=2, count=3)
    conforms, _results, text = pyshacl.validate(g, shacl_graph=shapes, allow_warnings=True)
    assert conforms, text


def test_a_broken_export_does_fail_validation() -> None:
    """The validation above can fail: a licence given as a literal is a violation."""
    pyshacl = pytest.importorskip("pyshacl")
    from rdflib import Literal

    shapes = Graph().parse(SHAPES / "dcat-ap-3.0.1-SHACL.ttl", format="turtle")
    g = page_graph(AWKWARD[:1])
    dist = next(g.subjects(RDF.type, DCAT.Distribution))
    g.remove((dist, DCTERMS.license, None))
    g.add((dist, DCTERMS.license, Literal("CC-BY-4.0")))
    conforms, _r, _t = pyshacl.validate(g, shacl_graph=shapes)
    assert not conforms


def test_every_distribution_has_a_licence_document_even_for_expressions() -> None:
    g = page_graph(AWKWARD)
    for dist in g.subjects(RDF.type, DCAT.Distribution):
        docs = list(g.objects(dist, DCTERMS.license))
        assert len(docs) == 1
        assert (docs[0], RDF.type, DCTERMS.LicenseDocument) in g


def test_or_picks_an_eu_licence_and_keeps_the_expression_as_rights() -> None:
    g = page_graph([AWKWARD[1]])
    dist = next(g.subjects(RDF.type, DCAT.Distribution))
    assert next(g.objects(dist, DCTERMS.license)) == URIRef(
        "http://publications.europa.eu/resource/authority/licence/CC0")
    rights = next(g.objects(dist, DCTERMS.rights))
    from rdflib.namespace import RDFS

    assert "MIT OR CC0-1.0" in str(next(g.objects(rights, RDFS.label)))


def test_hydra_links() -> None:
    g = page_graph(AWKWARD[:2], number=2, count=3)
    from communs.node.http.public.dcat import HYDRA

    view = URIRef(f"{META.base_url}/catalog.ttl?page=2")
    assert (view, HYDRA.next, URIRef(f"{META.base_url}/catalog.ttl?page=3")) in g
    assert (view, HYDRA.previous, URIRef(f"{META.base_url}/catalog.ttl?page=1")) in g
    assert (view, HYDRA.nextPage, URIRef(f"{META.base_url}/catalog.ttl?page=3")) in g  # the older form too
    assert (view, RDF.type, HYDRA.PagedCollection) in g
    last = page_graph(AWKWARD[:2], number=3, count=3)
    assert not list(last.objects(None, HYDRA.next))


def test_negotiate() -> None:
    assert dcat.negotiate(None) == "ttl"
    assert dcat.negotiate("*/*") == "ttl"
    assert dcat.negotiate("application/ld+json") == "jsonld"
    assert dcat.negotiate("text/turtle;q=0.5, application/rdf+xml") == "rdf"
    assert dcat.negotiate("application/rdf+xml;q=0, text/turtle;q=0.1") == "ttl"


def test_every_distribution_with_a_known_checksum_states_its_sha256_and_no_other() -> None:
    from rdflib import Literal
    from rdflib.namespace import XSD

    g = page_graph(AWKWARD)
    spdx = dcat.SPDX
    for dist in g.subjects(RDF.type, DCAT.Distribution):
        path = str(next(g.objects(dist, DCTERMS.title)))
        sums = list(g.objects(dist, spdx.checksum))
        if path == "dir/a b.csv":  # not computed (from verified bytes) yet: no checksum at all
            assert sums == []
            continue
        assert len(sums) == 1, path
        assert next(g.objects(sums[0], spdx.algorithm)) == spdx.checksumAlgorithm_sha256
        assert next(g.objects(sums[0], spdx.checksumValue)) == Literal(
            hashlib.sha256(path.encode()).hexdigest(), datatype=XSD.hexBinary)
    plain = dcat.catalog_graph(META, AWKWARD[:1], dcat.Page(1, 1, 1, url=lambda n: f"{META.base_url}/c?page={n}"))
    assert not list(plain.objects(None, spdx.checksum))  # no checksums given: none stated


def test_copies_are_a_dqv_measurement_of_each_dataset() -> None:
    from rdflib import Literal
    from rdflib.namespace import XSD

    g = page_graph(AWKWARD[:6])
    metric = URIRef(f"{META.base_url}/#metric-copies")
    assert (metric, RDF.type, dcat.DQV.Metric) in g
    for v in AWKWARD[:6]:
        ds = dcat.dataset_iri(META, v.id)
        (m,) = list(g.objects(ds, dcat.DQV.hasQualityMeasurement))
        assert (m, dcat.DQV.isMeasurementOf, metric) in g
        assert (m, dcat.DQV.value, Literal(v.version % 4, datatype=XSD.nonNegativeInteger)) in g
    unknown = dcat.catalog_graph(META, AWKWARD[:1], dcat.Page(1, 1, 1, url=lambda n: f"{META.base_url}/c?page={n}"))
    assert not list(unknown.objects(None, dcat.DQV.hasQualityMeasurement))


def test_licence_documents_carry_their_adms_type_and_distributions_their_dates() -> None:
    from rdflib.namespace import SKOS

    g = page_graph([AWKWARD[5]])  # CC-BY-4.0
    doc = URIRef("http://publications.europa.eu/resource/authority/licence/CC_BY_4_0")
    kind = URIRef("http://purl.org/adms/licencetype/Attribution")
    assert (doc, DCTERMS.type, kind) in g and (kind, RDF.type, SKOS.Concept) in g
    assert list(g.objects(kind, SKOS.prefLabel))
    dist = next(g.subjects(RDF.type, DCAT.Distribution))
    assert next(g.objects(dist, DCTERMS.modified)) == next(g.objects(dist, DCTERMS.issued))


def test_catalog_licence_language_and_publisher_type_when_configured() -> None:
    g = page_graph(AWKWARD[:1])
    cat = URIRef(f"{META.base_url}/catalog")
    assert (cat, DCTERMS.license, URIRef("http://publications.europa.eu/resource/authority/licence/CC0")) in g
    language = URIRef("http://publications.europa.eu/resource/authority/language/FRA")
    assert (cat, DCTERMS.language, language) in g and (language, RDF.type, DCTERMS.LinguisticSystem) in g
    publisher = next(g.objects(cat, DCTERMS.publisher))
    assert (publisher, DCTERMS.type, URIRef("http://purl.org/adms/publishertype/NonProfitOrganisation")) in g
    bare = dcat.CatalogMeta(base_url="https://x.org", title="t", description="d", publisher_name="p")
    plain = dcat.catalog_graph(bare, AWKWARD[:1], dcat.Page(1, 1, 1, url=lambda n: f"https://x.org/c?page={n}"))
    assert not list(plain.objects(URIRef("https://x.org/catalog"), DCTERMS.language))
    assert not list(plain.objects(URIRef("https://x.org/catalog"), DCTERMS.license))
