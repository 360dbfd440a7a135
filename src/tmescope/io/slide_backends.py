"""Slide backends (tifffile + zarr, OpenSlide, PIL) and :func:`open_slide`, which picks one."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr
from PIL import Image, UnidentifiedImageError

from tmescope.errors import InputNotFoundError, MissingDependencyError, SlideReadError
from tmescope.io.slide import Slide, SlideLevel, padded_read, to_rgb_uint8
from tmescope.io.tiles import TileCache

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".btf", ".tf8", ".tf2", ".ome.tif", ".ome.tiff")
OPENSLIDE_SUFFIXES = (".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# Metadata that gives a "resolution" of 72 or 96 dpi is a screen default, not a microscope.
PLAUSIBLE_MPP = (0.05, 50.0)
_MICRONS_PER_UNIT = {
    "INCH": 25_400.0,
    "CENTIMETER": 10_000.0,
    "MILLIMETER": 1_000.0,
    "MICROMETER": 1.0,
}
_OME_UNIT_MICRONS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


def open_slide(path: Path | str) -> Slide:
    """Open an RGB slide lazily with the backend that fits its format."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"image {path} does not exist; check the path given with --image")
    if path.is_dir():
        raise SlideReadError(
            f"image {path} is a folder; expected an image file (TIFF, SVS, PNG, …)"
        )
    name = path.name.lower()
    if name.endswith(OPENSLIDE_SUFFIXES):
        return OpenSlideSlide(path)
    if name.endswith(TIFF_SUFFIXES) or _looks_like_tiff(path):
        return TiffSlide(path)
    return PilSlide(path)


class TiffSlide(Slide):
    """TIFF, SVS and OME-TIFF, read lazily: only the tiles under a region are decoded.

    Tiled interleaved pages go through a :class:`~tmescope.io.tiles.TileCache` (each tile decoded
    once while it stays cached); other layouts through tifffile's zarr interface.
    """

    backend = "tifffile"

    def __init__(self, path: Path) -> None:
        self.path = path
        with ExitStack() as on_error:  # a file we refuse is closed again
            try:
                self._tif = on_error.enter_context(tifffile.TiffFile(path))
                with _quiet_tifffile():
                    series = self._tif.series[0]
                self._axes = series.axes
                self._arrays = [
                    zarr.open_array(series.aszarr(level=i), mode="r")
                    for i in range(len(series.levels))
                ]
            except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as exc:
                raise SlideReadError(
                    f"could not read {path} as a TIFF image ({exc}); expected a (pyramidal) TIFF, SVS "
                    "or OME-TIFF; re-export the slide or check that the file is complete"
                ) from exc
            if "Y" not in self._axes or "X" not in self._axes:
                raise SlideReadError(f"{path}: image axes are {self._axes!r}, expected Y and X")
            channels = [a for a in self._axes if a in "SC"]
            n_channels = (
                int(np.prod([series.shape[self._axes.index(a)] for a in channels]))
                if channels
                else 1
            )
            if n_channels > 4:
                raise SlideReadError(
                    f"{path} has {n_channels} channels; expected a brightfield RGB (H&E) image"
                )
            full_w = self._arrays[0].shape[self._axes.index("X")]
            self.levels = tuple(
                SlideLevel(
                    width=a.shape[self._axes.index("X")],
                    height=a.shape[self._axes.index("Y")],
                    downsample=full_w / a.shape[self._axes.index("X")],
                )
                for a in self._arrays
            )
            self.mpp, self.mpp_source = _tiff_mpp(self._tif)
            self._tiles = [
                TileCache(path, level.keyframe)
                if self._axes in ("YXS", "YX") and TileCache.supports(level.keyframe)
                else None
                for level in series.levels
            ]
            on_error.pop_all()  # opened: the slide owns the file now

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        array = self._arrays[level]
        lvl = self.levels[level]
        tiles = self._tiles[level]
        if tiles is not None:
            try:
                return padded_read(tiles.read, (lvl.width, lvl.height), x, y, width, height)
            except (ValueError, OSError, RuntimeError) as exc:
                raise SlideReadError(f"could not decode a region of {self.path}: {exc}") from exc

        def read(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
            index = tuple(
                slice(y0, y1)
                if a == "Y"
                else slice(x0, x1)
                if a == "X"
                else slice(None)
                if a in "SC"
                else 0
                for a in self._axes
            )
            kept = [a for a in self._axes if a in "YXSC"]
            block = np.asarray(array[index])
            order = [kept.index("Y"), kept.index("X")] + [
                i for i, a in enumerate(kept) if a in "SC"
            ]
            block = block.transpose(order)
            if block.ndim == 4:  # both S and C present: flatten them into channels
                block = block.reshape(block.shape[0], block.shape[1], -1)
            return to_rgb_uint8(block)

        try:
            return padded_read(read, (lvl.width, lvl.height), x, y, width, height)
        except (ValueError, OSError, RuntimeError) as exc:
            raise SlideReadError(f"could not decode a region of {self.path}: {exc}") from exc

    def check_complete(self) -> None:
        """Every tile or strip of every page lies inside the file: a truncated copy is caught
        from the TIFF's own index, not halfway through embedding."""
        size = self.path.stat().st_size
        try:
            with _quiet_tifffile():
                # Pyramid levels may be SubIFDs, which the file's page list does not hold.
                pages = [p for level in self._tif.series[0].levels for p in level.pages if p]
                pages += list(self._tif.pages)
        except (tifffile.TiffFileError, OSError, ValueError) as exc:
            raise SlideReadError(
                f"slide {self.path} is damaged or truncated ({exc}); copy the slide again"
            ) from exc
        for page in pages:
            offsets = getattr(page, "dataoffsets", ())
            counts = getattr(page, "databytecounts", ())
            ends = [o + c for o, c in zip(offsets, counts, strict=False) if c]
            if ends and max(ends) > size:
                raise SlideReadError(
                    f"slide {self.path} is truncated: its image data reach byte {max(ends):,} "
                    f"but the file holds {size:,} bytes; copy the slide again"
                )

    def close(self) -> None:
        for tiles in self._tiles:
            if tiles is not None:
                tiles.close()
        self._tif.close()


class OpenSlideSlide(Slide):
    """NDPI, MRXS and other vendor formats through OpenSlide (the ``slides`` extra)."""

    backend = "openslide"

    def __init__(self, path: Path) -> None:
        try:
            import openslide
        except ImportError as exc:
            raise MissingDependencyError(
                f"reading {path.suffix} slides needs OpenSlide; install it with "
                "pip install 'tmescope[slides]'"
            ) from exc
        self.path = path
        try:
            self._slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideReadError(f"OpenSlide could not open {path}: {exc}") from exc
        self.levels = tuple(
            SlideLevel(width=w, height=h, downsample=float(d))
            for (w, h), d in zip(
                self._slide.level_dimensions, self._slide.level_downsamples, strict=True
            )
        )
        mpp = self._slide.properties.get("openslide.mpp-x")
        self.mpp = _plausible(float(mpp)) if mpp else None
        self.mpp_source = "openslide.mpp-x" if self.mpp else None
        self._closed = False

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        d = self.levels[level].downsample

        def read(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
            # OpenSlide takes the top-left corner in level-0 pixels and the size in level pixels.
            region = self._slide.read_region(
                (round(x0 * d), round(y0 * d)), level, (x1 - x0, y1 - y0)
            )
            return to_rgb_uint8(np.asarray(region))

        lvl = self.levels[level]
        return padded_read(read, (lvl.width, lvl.height), x, y, width, height)

    def close(self) -> None:
        if not self._closed:  # OpenSlide raises on a second close; the other backends do not
            self._slide.close()
            self._closed = True


class PilSlide(Slide):
    """Small single-resolution images (PNG, JPEG): decoded once, on first read."""

    backend = "pil"

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise SlideReadError(
                f"could not read {path} as an image ({exc}); expected PNG, JPEG or a TIFF/SVS slide "
                "(convert very large JPEGs to a pyramidal TIFF)"
            ) from exc
        self.levels = (SlideLevel(width=width, height=height, downsample=1.0),)
        self.mpp, self.mpp_source = None, None
        self._pixels: np.ndarray | None = None

    def pixels(self) -> np.ndarray:
        """The whole image as RGB uint8 (decoded on first use)."""
        if self._pixels is None:
            try:
                with Image.open(self.path) as image:
                    self._pixels = to_rgb_uint8(_pil_array(image))
            except (OSError, ValueError) as exc:
                raise SlideReadError(f"could not decode {self.path}: {exc}") from exc
        return self._pixels

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        pixels = self.pixels()
        return padded_read(
            lambda x0, y0, x1, y1: pixels[y0:y1, x0:x1],
            (self.width, self.height),
            x,
            y,
            width,
            height,
        )


def _pil_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":  # 16-bit PNGs may open as 32-bit integers holding 0–65535
        return np.asarray(image).clip(0, 65535).astype(np.uint16)
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return np.asarray(image)
    return np.asarray(image.convert("RGBA"))


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log while it parses: a damaged file makes it log every broken tag
    list, and the :class:`SlideReadError` we raise says what is wrong once."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _looks_like_tiff(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _tiff_mpp(tif: tifffile.TiffFile) -> tuple[float | None, str | None]:
    """µm per level-0 pixel from SVS, OME or TIFF resolution tags, when plausible."""
    page = tif.pages.first
    if tif.is_svs:
        match = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", page.description or "")
        if match:
            return _plausible(float(match.group(1))), "svs:MPP"
    if tif.is_ome and tif.ome_metadata:
        mpp = _ome_mpp(tif.ome_metadata)
        if mpp:
            return _plausible(mpp), "ome:PhysicalSizeX"
    unit = getattr(page.resolutionunit, "name", str(page.resolutionunit))
    x_res = page.resolution[0] if page.resolution else 0
    if unit in _MICRONS_PER_UNIT and x_res and x_res > 1:
        mpp = _plausible(_MICRONS_PER_UNIT[unit] / x_res)
        return mpp, ("tiff:XResolution" if mpp else None)
    return None, None


def _ome_mpp(xml: str) -> float | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("Pixels") and "PhysicalSizeX" in element.attrib:
            unit = element.attrib.get("PhysicalSizeXUnit", "µm")
            return float(element.attrib["PhysicalSizeX"]) * _OME_UNIT_MICRONS.get(unit, 1.0)
    return None


def _plausible(mpp: Any) -> float | None:
    low, high = PLAUSIBLE_MPP
    if mpp is None or not (low <= float(mpp) <= high):
        if mpp is not None:
            log.info("ignoring implausible image resolution %.4g µm/px", float(mpp))
        return None
    return float(mpp)
