"""A page of the report: sections, a table of contents and a stylesheet, in one HTML file.

Everything a page shows travels inside it: images as base64 data URIs, the stylesheet inline,
no script; its only links are relative ones to the report's other pages (the index and the
samples' pages, see :mod:`tmescope.viz.report.folder`), so a report folder can be zipped,
mailed or archived and still open, offline, years later. Text from users and data (sample ids,
gene names, paths) is escaped here; a section's ``html`` is markup built by tmescope (or by a
caller who escapes its own text).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Heading levels a section may take: 2 for a part of the report, 3 for an entry inside one.
SECTION_LEVELS = (2, 3)


@dataclass(frozen=True)
class ReportSection:
    """One titled part of the report.

    ``title`` is plain text (escaped on output); ``html`` is trusted markup placed as is. A
    level-3 section is listed in the table of contents under the level-2 section before it.
    Its id on the page is :func:`slug` of ``anchor`` (default: the title), numbered on repeats.
    """

    title: str
    html: str
    level: int = 2
    anchor: str = ""

    def __post_init__(self) -> None:
        if self.level not in SECTION_LEVELS:
            raise ValueError(f"level must be 2 or 3, got {self.level!r}")


# The sections of one sample's page, made when that page is written (see ReportPart).
SampleSections = Callable[[str], Sequence[ReportSection]]


@dataclass(frozen=True)
class ReportPart:
    """What a caller adds to the report: sections for the index and sections for each sample's
    page.

    ``per_sample(sample_id)`` is called once per sample, when that sample's page is written, so
    that no more than one sample's figures are held at a time (the part keeps paths, not
    images). It returns no section for a sample it knows nothing of.
    """

    index: tuple[ReportSection, ...] = ()
    per_sample: SampleSections | None = None

    def sections_of(self, sample_id: str) -> list[ReportSection]:
        return list(self.per_sample(sample_id)) if self.per_sample is not None else []


def escape(text: object) -> str:
    """``text`` as safe HTML text or attribute value (quotes escaped too)."""
    return html.escape(str(text), quote=True)


def data_uri(data: bytes, mime: str) -> str:
    """``data`` embedded as a ``data:`` URI."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_tag(data: bytes, *, mime: str, alt: str, width: int | None = None) -> str:
    """An ``<img>`` holding ``data`` itself (no file, no request)."""
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="{data_uri(data, mime)}" alt="{escape(alt)}"{size}>'


def figure(data: bytes, *, mime: str, alt: str, caption: str, css: str = "") -> str:
    """An image with a caption; ``caption`` is markup (escape user text before passing it)."""
    attribute = f' class="{escape(css)}"' if css else ""
    return (
        f"<figure{attribute}>{image_tag(data, mime=mime, alt=alt)}"
        f"<figcaption>{caption}</figcaption></figure>"
    )


def note(text: str, *, warning: bool = False) -> str:
    """A boxed remark; ``text`` is plain text."""
    css = "note warning" if warning else "note"
    return f'<p class="{css}">{escape(text)}</p>'


def facts_table(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of labels and values, both plain text."""
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def render_page(
    *,
    title: str,
    facts: Sequence[tuple[str, str]],
    sections: Sequence[ReportSection],
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """The whole HTML document: ``links`` (label, relative href: the index, the previous and
    next sample), header with ``facts``, table of contents, then ``sections``."""
    ids = _unique_ids([s.anchor or s.title for s in sections])
    toc = _table_of_contents(sections, ids)
    body = "\n".join(
        f'<section id="{anchor}" class="level{s.level}">'
        f"<h{s.level}>{escape(s.title)}</h{s.level}>\n{s.html}</section>"
        for s, anchor in zip(sections, ids, strict=True)
    )
    pager = _pager(links)
    return _PAGE.format(
        title=escape(title), style=_STYLE, facts=facts_table(facts), toc=toc, body=body,
        pager=pager,
    )  # fmt: skip


def link(label: str, href: str) -> str:
    """``<a>`` to ``href`` (a relative address built by tmescope; escaped as an attribute)."""
    return f'<a href="{escape(href)}">{escape(label)}</a>'


def _pager(links: Sequence[tuple[str, str]]) -> str:
    if not links:
        return ""
    return f'<nav class="pager">{" ".join(link(label, href) for label, href in links)}</nav>'


def _table_of_contents(sections: Sequence[ReportSection], ids: Sequence[str]) -> str:
    entries: list[tuple[str, list[str]]] = []  # (link, links of its level-3 sections)
    for section, anchor in zip(sections, ids, strict=True):
        link = f'<a href="#{anchor}">{escape(section.title)}</a>'
        if section.level == 3 and entries:
            entries[-1][1].append(link)
        else:
            entries.append((link, []))
    items = "".join(
        f"<li>{link}"
        + (f"<ol>{''.join(f'<li>{c}</li>' for c in children)}</ol>" if children else "")
        + "</li>"
        for link, children in entries
    )
    return f"<nav><h2>Contents</h2><ol>{items}</ol></nav>"


def slug(text: str) -> str:
    """``text`` as an id: lower-case letters and digits, other runs as one dash."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _unique_ids(names: Sequence[str]) -> list[str]:
    """An id per name (:func:`slug`), numbered where one repeats."""
    seen: dict[str, int] = {}
    ids = []
    for name in names:
        base = slug(name)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
  margin: 0 auto; max-width: 1100px; padding: 1.5rem 2rem 4rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.4rem; }
h2 { font-size: 1.35rem; border-bottom: 2px solid #c2185b; padding-bottom: 0.2rem;
  margin-top: 2.5rem; }
h3 { font-size: 1.1rem; margin-top: 2rem; color: #6a1b4d; }
nav { background: #f7f4f6; border-radius: 6px; padding: 0.4rem 1.2rem; margin: 1rem 0; }
nav h2 { border: none; font-size: 1rem; margin: 0.5rem 0 0; }
nav ol { margin: 0.3rem 0; } nav ol ol { font-size: 0.9rem; }
a { color: #ad1457; }
table { border-collapse: collapse; margin: 0.6rem 0; font-size: 0.9rem; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #e4e0e2; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.facts th { color: #555; font-weight: 600; }
table.facts td { text-align: left; word-break: break-all; }
tr.best td { font-weight: 700; background: #fcf1f6; }
.scroll { overflow-x: auto; }
figure { margin: 1rem 0; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; }
.figures figure { flex: 1 1 420px; max-width: 640px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure img { max-width: 100%; height: auto; border-radius: 4px; }
figure.he img { max-height: 480px; width: auto; }
figcaption { font-size: 0.85rem; color: #555; margin-top: 0.3rem; max-width: 900px; }
.note { background: #eef4fb; border-left: 4px solid #4a7fb5; padding: 0.5rem 0.8rem; }
.note.warning { background: #fff6e5; border-left-color: #e69500; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8rem; }
.gallery figure { width: 128px; margin: 0; font-size: 0.75rem; }
.gallery figure.query img { outline: 4px solid #c2185b; }
.gallery .missing { width: 128px; height: 128px; background: #eee; color: #777;
  display: flex; align-items: center; justify-content: center; text-align: center; }
.gallery figcaption { overflow-wrap: anywhere; }
details { margin: 0.6rem 0; } summary { cursor: pointer; color: #ad1457; }
footer { margin-top: 3rem; font-size: 0.8rem; color: #777; }
nav.pager { display: flex; gap: 1.5rem; font-size: 0.9rem; margin: 0.3rem 0; }
td.thumb { padding: 0.15rem 0.5rem; } td.thumb img { display: block; border-radius: 3px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head>
<body>
{pager}
<header><h1>{title}</h1>
{facts}</header>
{toc}
<main>
{body}
</main>
{pager}
<footer>Written by tmescope. Every image is inside this page; its links lead only to the
report's other pages, in the folder beside the index.</footer>
</body></html>
"""
