"""Figures drawn to files by other commands (niches, interactions, sub-spot maps), put inline in
a report page, and found by sample.

``tmescope niches``, ``interactions`` and ``interactions --resolution`` name a sample's figures
``<kind>_<sample>.png`` and the cohort's ``<kind>_cohort.png``: :class:`FigureFiles` finds a
sample's by exact name (a dictionary built once, so a page costs the same at forty samples as
at four).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from tmescope.viz.report.page import escape, figure

# Maps over the H&E photograph: inlined as JPEG (a fifth of the PNG); charts stay PNG (sharp text).
PHOTO_PREFIXES = ("labels_", "niches_", "populations_", "uncertainty_", "interface_map_")
JPEG_QUALITY = 82
MAX_PX = 1600  # long side of an inlined map: sharp on a high-density screen, no larger


class FigureFiles:
    """A set of figure files, looked up by name."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self._by_name = {Path(p).name: Path(p) for p in paths}

    def named(self, *names: str) -> tuple[Path, ...]:
        """The figures of these file names that exist, in that order."""
        found = (self._by_name.get(name) for name in names)
        return tuple(p for p in found if p is not None and p.is_file())

    def of_sample(self, sample_id: str, kinds: Sequence[str]) -> tuple[Path, ...]:
        """The sample's figures of each kind (``<kind>_<sample>.png``), in the order of ``kinds``."""
        return self.named(*(f"{kind}_{sample_id}.png" for kind in kinds))


def figures_html(paths: Sequence[Path]) -> str:
    """Every figure inline, in a grid, captioned with its file name."""
    parts = []
    for path in paths:
        data, mime = inline(path)
        caption = escape(path.stem.replace("_", " "))
        parts.append(figure(data, mime=mime, alt=path.stem, caption=caption))
    return f"<div class='figures'>{''.join(parts)}</div>" if parts else ""


def inline(path: Path) -> tuple[bytes, str]:
    """A figure's bytes and type: maps over the H&E as JPEG (no more than :data:`MAX_PX` on a
    side), charts as the PNG they are."""
    if not path.name.startswith(PHOTO_PREFIXES):
        return path.read_bytes(), "image/png"
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if max(rgb.size) > MAX_PX:
            rgb.thumbnail((MAX_PX, MAX_PX), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue(), "image/jpeg"
