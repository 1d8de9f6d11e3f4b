"""The human catalog: small HTML pages without JavaScript, rendered from plain data.

Accessible by construction: one `h1` per page and headings in order, a labelled search field, a
language attribute, text at a contrast above WCAG AA (#1a1a1a on white, links #0b4f8a), tables with
header cells, sizes in words a person reads. Everything user-supplied goes through `html.escape`.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from communs.node.http.public import licences
from communs.node.http.public.files import PublicFile, PublicVersion

COPIES_NOTE = ("Copies: how many nodes of the federation hold that version complete, from their signed "
               "holding claims (a node that failed a proof-of-holding check is not counted).")

_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;max-width:60rem;margin:auto;"
          "padding:1rem}a{color:#0b4f8a}table{border-collapse:collapse;width:100%}th,td{text-align:left;"
          "padding:.3rem .5rem;border-bottom:1px solid #ccc;vertical-align:top}code{background:#f0f0f0;"
          "padding:0 .2rem;word-break:break-all}label{font-weight:600;margin-right:.5rem}"
          "input,button{font:inherit;padding:.2rem .4rem}")


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def size_words(n: int) -> str:
    units = ["bytes", "KB", "MB", "GB", "TB"]
    value = float(n)
    for unit in units:
        if value < 1000 or unit == units[-1]:
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} bytes"


def date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def licence_html(expression: str) -> str:
    """The licence in words, each id linked to its text (EU authority or SPDX page)."""
    choice = licences.choose(expression)
    if not choice.ids:
        return e(expression)
    parts = []
    for spdx_id in choice.ids:
        iri = licences.licence_iri(spdx_id)
        name = e(licences.words(spdx_id))
        parts.append(f'<a href="{e(iri)}">{name}</a>' if iri else name)
    joined = ", ".join(parts)
    return joined if len(choice.ids) == 1 else f"{joined} (<code>{e(expression)}</code>)"


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{e(title)}</title>'
            f'<link rel="alternate" type="text/turtle" href="/catalog.ttl"><style>{_STYLE}</style></head>'
            f"<body>{body}</body></html>")


def copies_words(n: int) -> str:
    return "none known" if n == 0 else f"{n} cop{'y' if n == 1 else 'ies'}"


def index(*, title: str, description: str, publisher: str, versions: Sequence[PublicVersion], query: str,
          page: int, pages: int, counts: dict[str, int], copies: dict[str, int] | None = None) -> str:
    """The catalog page: the latest public version of each dataset, with search and paging.
    `counts`: dataset id -> public versions of it; `copies`: version id -> copies in the federation."""
    copies = copies or {}
    q = e(query)
    rows = []
    for v in versions:
        kws = ", ".join(e(k) for k in v.keywords)
        rows.append(f'<tr><td><a href="/datasets/{e(v.id)}">{e(v.title or v.id)}</a>'
                    f'{"<br><small>" + kws + "</small>" if kws else ""}</td>'
                    f"<td>{licence_html(v.licence)}</td><td>{e(size_words(v.size))}</td>"
                    f"<td>{counts.get(v.dataset, 1)} (latest: {v.version}, {date(v.created)})</td>"
                    f"<td>{e(copies_words(copies.get(v.id, 0)))}</td></tr>")
    table = ("<table><caption>Datasets</caption><thead><tr><th scope=col>Title</th><th scope=col>Licence</th>"
             "<th scope=col>Size</th><th scope=col>Versions</th><th scope=col>Copies</th></tr></thead><tbody>" +
             "".join(rows) + f"</tbody></table><p><small>{e(COPIES_NOTE)} The figure is for the latest "
             "version.</small></p>") if rows else "<p>No dataset matches.</p>"
    nav = []
    qs = f"&amp;q={e(urllib.parse.quote(query))}" if query else ""
    if page > 1:
        nav.append(f'<a href="/?page={page - 1}{qs}" rel="prev">Previous page</a>')
    if page < pages:
        nav.append(f'<a href="/?page={page + 1}{qs}" rel="next">Next page</a>')
    body = (f"<header><h1>{e(title)}</h1><p>{e(description)}</p><p>Published by {e(publisher)}.</p></header>"
            '<main><form method="get" action="/" role="search"><label for="q">Search by title or keyword</label>'
            f'<input id="q" name="q" type="search" value="{q}"> <button type="submit">Search</button></form>'
            f"<h2>Datasets</h2>{table}"
            f'<nav aria-label="Pages"><p>Page {page} of {pages}. {" ".join(nav)}</p></nav></main>'
            '<footer><p>Machine-readable catalog (DCAT-AP 3.0.1): <a href="/catalog.ttl">Turtle</a>, '
            '<a href="/catalog.jsonld">JSON-LD</a>, <a href="/catalog.rdf">RDF/XML</a>.</p></footer>')
    return _page(title, body)


def dataset(v: PublicVersion, *, site_title: str, publisher: str, versions: Sequence[PublicVersion],
            base_url: str, copies: dict[str, int] | None = None,
            checksums: Callable[[PublicFile], str | None] | None = None) -> str:
    """One dataset version: description, licence, files with download links and SHA-256 (once computed
    from verified bytes), versions with their copies in the federation, how to cite."""
    copies = copies or {}

    def sha(f: PublicFile) -> str:
        digest = checksums(f) if checksums else None
        return f"<code>{e(digest)}</code>" if digest else "not computed yet"

    files = "".join(
        f'<tr><td><a href="/datasets/{e(v.id)}/files/{e(urllib.parse.quote(f.path, safe="/"))}">{e(f.path)}</a>'
        f"</td><td>{e(size_words(f.size))}</td><td>{sha(f)}</td></tr>" for f in v.files)
    others = "".join(
        f'<li>{"<strong>" if o.id == v.id else ""}<a href="/datasets/{e(o.id)}">version {o.version}</a>, '
        f'{date(o.created)}{"</strong> (this page)" if o.id == v.id else ""}, '
        f"{e(copies_words(copies.get(o.id, 0)))}</li>"
        for o in sorted(versions, key=lambda o: -o.version))
    kws = ", ".join(e(k) for k in v.keywords) or "none"
    body = (f'<header><p><a href="/">{e(site_title)}</a></p><h1>{e(v.title or v.id)}</h1></header><main>'
            f"<p>{e(v.description) if v.description.strip() else 'The publisher gave no description.'}</p>"
            "<h2>About</h2><table><tbody>"
            f"<tr><th scope=row>Licence</th><td>{licence_html(v.licence)}</td></tr>"
            f"<tr><th scope=row>Publisher</th><td>{e(publisher)}</td></tr>"
            f"<tr><th scope=row>Version</th><td>{v.version}, published {date(v.created)}</td></tr>"
            f"<tr><th scope=row>Size</th><td>{e(size_words(v.size))} in {len(v.files)} file(s)</td></tr>"
            f"<tr><th scope=row>Keywords</th><td>{kws}</td></tr>"
            f"<tr><th scope=row>Copies</th><td>{e(copies_words(copies.get(v.id, 0)))} in the federation"
            f"<br><small>{e(COPIES_NOTE)}</small></td></tr></tbody></table>"
            "<h2>Files</h2><table><thead><tr><th scope=col>File</th><th scope=col>Size</th>"
            "<th scope=col>SHA-256</th></tr></thead>"
            f"<tbody>{files}</tbody></table>"
            f'<p><a href="/datasets/{e(v.id)}/archive.tar">Download every file as one tar archive</a> '
            f"({e(size_words(v.size))} of files).</p>"
            f"<h2>Versions</h2><ul>{others}</ul>"
            "<h2>How to cite it</h2>"
            f"<p>This version's permanent id (a content identifier: the same id always means the same bytes): "
            f"<code>{e(v.id)}</code>. The dataset's id, for its latest version: <code>{e(v.dataset)}</code>.</p>"
            f"<p>Suggested citation: {e(publisher)} ({datetime.fromtimestamp(v.created, UTC).year}). "
            f"<cite>{e(v.title or v.id)}</cite>, version {v.version}. {e(base_url)}/datasets/{e(v.id)}</p>"
            f"<p>With a Communs node: <code>communs get {e(v.id)} DEST</code></p></main>")
    return _page(f"{v.title or v.id} — {site_title}", body)


def error(status: int, sentence: str) -> str:
    return _page(f"{status}", f'<main><h1>{status}</h1><p>{e(sentence)}</p><p><a href="/">Catalog</a></p></main>')


__all__ = ["COPIES_NOTE", "copies_words", "dataset", "error", "index", "licence_html", "size_words"]
