"""Similar-region galleries for the report: query patches and the cohort's closest regions.

Searches the store's FAISS index (built by ``tmescope index``); a store without one gets a
note saying how to add it, never an index built behind the user's back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tmescope.viz.report.maps import JPEG, encode_jpeg
from tmescope.viz.report.page import ReportSection, escape, image_tag, note

if TYPE_CHECKING:
    from tmescope.store import CohortStore
    from tmescope.viz.report.folder import ReportLayout
    from tmescope.viz.report.sources import SlideSources

CARD_PX = 128
GALLERY_INTRO = (
    "<p>For each query (outlined), the regions of the other slides whose embeddings are most "
    "alike (cosine similarity of the foundation model's embeddings; 1 is identical); a "
    "one-slide cohort is searched within its slide. Queries are the spots where the "
    "best-predicted TME states peak (or, without a model, the centre of the first sample). "
    "Each patch is cut from its own slide at the embedding's field of view; click one to open "
    "its sample's page.</p>"
)


@dataclass(frozen=True)
class GalleryCard:
    """One patch of a gallery (``None`` where its slide cannot be read) and its caption."""

    pixels: np.ndarray | None  # (h, w, 3) uint8
    title: str
    detail: str
    href: str = ""  # the page of the card's sample, when the report has one


@dataclass(frozen=True)
class GalleryQuery:
    """A query spot: where ``label`` (a TME state) peaks, at ``value``; NaN for a plain spot."""

    label: str
    value: float
    sample_id: str
    barcode: str
    x: float  # full-resolution pixels
    y: float


def similar_regions(
    store: CohortStore,
    sources: SlideSources,
    queries: Sequence[GalleryQuery],
    *,
    k: int,
    layout: ReportLayout | None = None,
) -> ReportSection:
    """For each query, the ``k`` regions of the cohort most like it (itself left out); each
    card links to its sample's page when ``layout`` gives the sample one. A query's slides are
    released once its cards are cut, so that no more than ``k + 1`` are open at a time."""
    from tmescope.store.index import index_status, load_index
    from tmescope.store.search import spot_vector

    title = "Similar regions"
    status = index_status(store)
    if status == "missing":
        return ReportSection(title, note(
            f"{store.path} has no similarity index: run `tmescope index {store.path}` to add "
            "similar-region galleries."
        ))  # fmt: skip
    index = load_index(store, warn_stale=False)
    parts = [GALLERY_INTRO]
    if status == "stale":
        parts.append(note(
            "The similarity index does not cover the store's current samples (samples were "
            f"added or removed since it was built): run `tmescope index {store.path}` again.",
            warning=True,
        ))  # fmt: skip
    for query in queries:
        vector = spot_vector(store, query.sample_id, query.barcode)
        # Other slides first: a region's neighbours on its own slide are alike trivially.
        others = sum(s.n for s in index.info.samples if s.sample_id != query.sample_id)
        if others:
            hits = index.search(vector, k=min(k, others), exclude_sample=query.sample_id)[0]
        else:
            found = index.search(vector, k=min(k + 1, index.n))[0]
            hits = [
                h for h in found if (h.sample_id, h.barcode) != (query.sample_id, query.barcode)
            ]
        cards = [
            GalleryCard(
                sources.patch(h.sample_id, h.x, h.y), f"#{rank} {h.sample_id}",
                f"similarity {h.score:.3f}; {h.barcode}", _href(layout, h.sample_id),
            )
            for rank, h in enumerate(hits[:k], start=1)
        ]  # fmt: skip
        plain = math.isnan(query.value)
        card = GalleryCard(
            sources.patch(query.sample_id, query.x, query.y), f"query: {query.sample_id}",
            query.barcode if plain else f"{query.barcode} ({query.label} {query.value:.2f})",
            _href(layout, query.sample_id),
        )  # fmt: skip
        sources.release_all()
        heading = (
            f"Like {query.label}" if plain
            else f"Like the highest predicted {query.label} ({query.sample_id})"
        )  # fmt: skip
        parts.append(gallery_html(card, cards, heading=heading))
    return ReportSection(title, "\n".join(parts))


def gallery_html(query: GalleryCard, hits: Sequence[GalleryCard], *, heading: str) -> str:
    """A heading, then the query (outlined) and its hits in a row of small cards."""
    cards = [_card(query, css="query")] + [_card(hit, css="hit") for hit in hits]
    return f'<h4>{escape(heading)}</h4><div class="gallery">{"".join(cards)}</div>'


def _href(layout: ReportLayout | None, sample_id: str) -> str:
    return layout.page_href(sample_id) if layout is not None and sample_id in layout.files else ""


def _card(card: GalleryCard, *, css: str) -> str:
    if card.pixels is None:
        picture = '<div class="missing">image not available</div>'
    else:
        data = encode_jpeg(card.pixels, max_px=CARD_PX)
        picture = image_tag(data, mime=JPEG, alt=card.title, width=CARD_PX)
    if card.href:
        picture = f'<a href="{escape(card.href)}">{picture}</a>'
    return (
        f'<figure class="{css}">{picture}<figcaption><b>{escape(card.title)}</b><br>'
        f"{escape(card.detail)}</figcaption></figure>"
    )
