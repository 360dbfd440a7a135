"""µm per pixel from a slide's own metadata: the SVS description, OME-XML ``PhysicalSizeX`` or
the TIFF resolution tags, kept only when plausible for a microscope.

Metadata is advice, never a reason to refuse an image: a value that does not parse, an unknown
unit or an implausible figure gives ``None``, and the caller falls back to ``--mpp`` or the spot
pitch.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from typing import Any

import tifffile

log = logging.getLogger(__name__)

# Metadata that gives a "resolution" of 72 or 96 dpi is a screen default, not a microscope.
PLAUSIBLE_MPP = (0.05, 50.0)
_MICRONS_PER_UNIT = {
    "INCH": 25_400.0,
    "CENTIMETER": 10_000.0,
    "MILLIMETER": 1_000.0,
    "MICROMETER": 1.0,
}
# OME's length units (UnitsLength); "pixel" and "reference frame" are not lengths: ignored.
_OME_UNIT_MICRONS = {
    "µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4, "pm": 1e-6,
    "in": 25_400.0,
}  # fmt: skip
_SVS_MPP = re.compile(r"\|\s*MPP\s*=\s*([^|\s]+)")


def tiff_mpp(tif: tifffile.TiffFile) -> tuple[float | None, str | None]:
    """µm per level-0 pixel from SVS, OME or TIFF resolution tags, when plausible."""
    page = tif.pages.first
    if tif.is_svs:
        match = _SVS_MPP.search(page.description or "")
        mpp = plausible_mpp(_number(match.group(1))) if match else None
        if mpp:
            return mpp, "svs:MPP"
    if tif.is_ome and tif.ome_metadata:
        mpp = plausible_mpp(_ome_mpp(tif.ome_metadata))
        if mpp:
            return mpp, "ome:PhysicalSizeX"
    unit = getattr(page.resolutionunit, "name", str(page.resolutionunit))
    x_res = _number(page.resolution[0]) if page.resolution else None
    if unit in _MICRONS_PER_UNIT and x_res and x_res > 1:
        mpp = plausible_mpp(_MICRONS_PER_UNIT[unit] / x_res)
        return mpp, ("tiff:XResolution" if mpp else None)
    return None, None


def plausible_mpp(mpp: Any) -> float | None:
    """``mpp`` as a float when a microscope could have it (0.05–50 µm/px), else ``None``."""
    value = _number(mpp)
    low, high = PLAUSIBLE_MPP
    if value is None or not (low <= value <= high):
        if mpp is not None:
            log.info("ignoring implausible image resolution %r µm/px", mpp)
        return None
    return value


def _ome_mpp(xml: str) -> float | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("Pixels") and "PhysicalSizeX" in element.attrib:
            unit = _OME_UNIT_MICRONS.get(element.attrib.get("PhysicalSizeXUnit", "µm"))
            size = _number(element.attrib["PhysicalSizeX"])
            return None if unit is None or size is None else size * unit
    return None


def _number(value: Any) -> float | None:
    """A finite float, or ``None`` for text that is not a number (``"1.2.3"``, ``"nan"``, and
    ``"1_000"``, which Python reads but no metadata standard writes)."""
    if isinstance(value, str) and "_" in value:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
