"""A self-contained HTML gallery of similar regions: the query patch and its hits, side by side.

Images are embedded as base64 JPEG, so the file opens anywhere, offline, and can be mailed to a
pathologist; no request leaves the page.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

THUMB_PX = 192


@dataclass(frozen=True)
class GalleryTile:
    """One picture of the gallery and what to write under it."""

    pixels: np.ndarray  # (h, w, 3) uint8
    title: str
    detail: str
    anchor: str  # a fragment naming the place, for the viewer to open later


def write_gallery(
    query: GalleryTile, hits: Sequence[GalleryTile], out: Path, *, heading: str
) -> Path:
    """Write the gallery to ``out`` (one HTML file, images inline)."""
    cards = [_card(query, css="query")] + [_card(hit, css="hit") for hit in hits]
    page = _PAGE.format(title=html.escape(heading), cards="\n".join(cards))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _card(tile: GalleryTile, *, css: str) -> str:
    image = Image.fromarray(tile.pixels).resize((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<figure class="{css}"><a href="#{html.escape(tile.anchor)}" id="{html.escape(tile.anchor)}">'
        f'<img alt="{html.escape(tile.title)}" src="data:image/jpeg;base64,{data}" '
        f'width="{THUMB_PX}" height="{THUMB_PX}"></a>'
        f"<figcaption><b>{html.escape(tile.title)}</b><br>{html.escape(tile.detail)}</figcaption></figure>"
    )


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
main {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; width: 192px; font-size: 0.8rem; }}
figure img {{ border-radius: 4px; display: block; }}
figure.query img {{ outline: 4px solid #c2185b; }}
figcaption {{ margin-top: 0.3rem; word-break: break-all; }}
</style></head>
<body><h1>{title}</h1>
<p>The query (outlined) and its most similar regions across the cohort, by cosine similarity of
the stored embeddings. Each patch is cut from its own slide at the embedding's field of view.</p>
<main>
{cards}
</main></body></html>
"""
