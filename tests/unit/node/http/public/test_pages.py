from __future__ import annotations

from html.parser import HTMLParser

from communs.node.http.public import pages
from communs.node.http.public.files import PublicFile, PublicVersion

EVIL = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def version(title: str = EVIL, licence: str = "MIT OR CC0-1.0") -> PublicVersion:
    return PublicVersion(id="bversionaaaa", dataset="bdatasetaaaa", version=2, title=title, description=EVIL,
                         keywords=(EVIL, "énergie"), licence=licence, publisher="p", created=1_700_000_000,
                         size=1_500_000, files=(PublicFile(f"dir/{EVIL}.csv", 10, ()),))


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def parse(text: str) -> Tags:
    t = Tags()
    t.feed(text)
    return t


def test_index_escapes_everything_and_has_the_accessible_structure() -> None:
    text = pages.index(title=EVIL, description=EVIL, publisher=EVIL, versions=[version()], query=EVIL, page=1,
                       pages=2, counts={"bdatasetaaaa": 2})
    t = parse(text)
    assert "script" not in t.tags and "img" not in t.tags
    assert not any(name.startswith("on") for name, _ in t.attrs)
    assert t.tags.count("h1") == 1 and "label" in t.tags and ("lang", "en") in t.attrs
    assert 'rel="next"' in text and "1.5 MB" in text


def test_dataset_page_escapes_and_says_how_to_cite() -> None:
    text = pages.dataset(version(), site_title=EVIL, publisher=EVIL, versions=[version()],
                         base_url="https://data.example.org")
    t = parse(text)
    assert "script" not in t.tags and "img" not in t.tags
    assert t.tags.count("h1") == 1
    assert "How to cite it" in text and "bversionaaaa" in text and "communs get bversionaaaa" in text
    assert "http://publications.europa.eu/resource/authority/licence/CC0" in text  # licence linked
    assert "MIT License" in text  # and named in words


def test_sizes_in_words() -> None:
    assert pages.size_words(0) == "0 bytes"
    assert pages.size_words(999) == "999 bytes"
    assert pages.size_words(1_500_000) == "1.5 MB"
    assert pages.size_words(2 * 10**12) == "2.0 TB"


def test_copies_and_checksums_are_shown() -> None:
    text = pages.index(title="t", description="d", publisher="p", versions=[version("A")], query="", page=1,
                       pages=1, counts={}, copies={"bversionaaaa": 3})
    assert "<th scope=col>Copies</th>" in text and "<td>3 copies</td>" in text and "holding claims" in text
    none = pages.index(title="t", description="d", publisher="p", versions=[version("A")], query="", page=1,
                       pages=1, counts={})
    assert "<td>none known</td>" in none
    one = pages.dataset(version("A"), site_title="s", publisher="p", versions=[version("A")], base_url="https://x",
                        copies={"bversionaaaa": 1}, checksums=lambda f: "ab" * 32)
    assert "1 copy in the federation" in one and "<code>" + "ab" * 32 + "</code>" in one
    unknown = pages.dataset(version("A"), site_title="s", publisher="p", versions=[version("A")],
                            base_url="https://x", checksums=lambda f: None)
    assert "not computed yet" in unknown and "none known in the federation" in unknown
