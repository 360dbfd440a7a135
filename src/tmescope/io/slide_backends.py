"""Slide backends (tifffile + zarr, OpenSlide, PIL) and :func:`open_slide`, which picks one."""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import tifffile
import zarr
from PIL import Image, UnidentifiedImageError

from tmescope.errors import InputNotFoundError, MissingDependencyError, SlideReadError
from tmescope.io._messages import first_line
from tmescope.io.png_check import png_data_complete
from tmescope.io.slide import Slide, SlideLevel, padded_read, to_rgb_uint8
from tmescope.io.slide_mpp import plausible_mpp, tiff_mpp
from tmescope.io.tiles import TileCache

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".btf", ".tf8", ".tf2", ".ome.tif", ".ome.tiff")
OPENSLIDE_SUFFIXES = (".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
_PIL_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")  # PNG, JPEG, BMP
# What tifffile and zarr raise on a damaged file (struct.error: a header cut short).
_TIFF_ERRORS = (
    tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError, TypeError, struct.error,
    ZeroDivisionError, RecursionError, RuntimeError,
)  # fmt: skip
_PIL_ERRORS = (
    UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
    Image.DecompressionBombError, zlib.error,
)  # fmt: skip


def open_slide(path: Path | str) -> Slide:
    """Open an RGB slide lazily with the backend that fits its format.

    The format is sniffed from the first bytes, not the name (a PNG saved as ``.tif`` opens);
    the name decides only for OpenSlide's vendor formats and for files that match no format.
    """
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
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise SlideReadError(f"could not read image {path}: {exc}") from exc
    if head.startswith(_TIFF_MAGIC):
        return TiffSlide(path)
    if head.startswith(_PIL_MAGIC):
        return PilSlide(path)
    return TiffSlide(path) if name.endswith(TIFF_SUFFIXES) else PilSlide(path)


class TiffSlide(Slide):
    """TIFF, SVS and OME-TIFF, read lazily: only the tiles under a region are decoded.

    Tiled interleaved pages go through a :class:`~tmescope.io.tiles.TileCache` (each tile decoded
    once while it stays cached); other layouts through tifffile's zarr interface.
    """

    backend = "tifffile"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tiles: list[TileCache | None] = []
        with ExitStack() as on_error:  # a file we refuse is closed again
            try:
                self._tif = on_error.enter_context(tifffile.TiffFile(path))
                on_error.callback(self._close_tiles)
                with _quiet_tifffile():
                    self._parse()
            except SlideReadError:
                raise
            except _TIFF_ERRORS as exc:
                raise SlideReadError(
                    f"could not read {path} as a TIFF image ({first_line(exc)}); expected a "
                    "(pyramidal) TIFF, SVS or OME-TIFF; re-export the slide or check that the "
                    "file is complete"
                ) from exc
            on_error.pop_all()  # opened: the slide owns the file now

    def _parse(self) -> None:
        """Levels, channels, µm/px and tile caches from the TIFF's first series."""
        series = self._tif.series[0]
        self._axes = series.axes
        self._arrays = [
            zarr.open_array(series.aszarr(level=i), mode="r") for i in range(len(series.levels))
        ]
        if "Y" not in self._axes or "X" not in self._axes:
            raise SlideReadError(f"{self.path}: image axes are {self._axes!r}, expected Y and X")
        channels = [a for a in self._axes if a in "SC"]
        n_channels = (
            int(np.prod([series.shape[self._axes.index(a)] for a in channels])) if channels else 1
        )
        if n_channels > 4:
            raise SlideReadError(
                f"{self.path} has {n_channels} channels; expected a brightfield RGB (H&E) image"
            )
        sizes = [
            (a.shape[self._axes.index("X")], a.shape[self._axes.index("Y")]) for a in self._arrays
        ]
        if min(min(size) for size in sizes) < 1:
            raise SlideReadError(
                f"{self.path} holds an empty image ({' / '.join(f'{w}×{h}' for w, h in sizes)} px); "
                "re-export the slide"
            )
        self.levels = tuple(
            SlideLevel(width=w, height=h, downsample=sizes[0][0] / w) for w, h in sizes
        )
        self.mpp, self.mpp_source = tiff_mpp(self._tif)
        for level in series.levels:
            supported = self._axes in ("YXS", "YX") and TileCache.supports(level.keyframe)
            self._tiles.append(TileCache(self.path, level.keyframe) if supported else None)

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        array = self._arrays[level]
        lvl = self.levels[level]
        tiles = self._tiles[level]
        if tiles is not None:
            try:
                return padded_read(tiles.read, (lvl.width, lvl.height), x, y, width, height)
            except _TIFF_ERRORS as exc:
                raise SlideReadError(
                    f"could not decode a region of {self.path} ({first_line(exc)}); the file is "
                    "damaged; copy it again or re-export the slide"
                ) from exc

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
        except _TIFF_ERRORS as exc:
            raise SlideReadError(
                f"could not decode a region of {self.path} ({first_line(exc)}); the file is "
                "damaged; copy it again or re-export the slide"
            ) from exc

    def check_complete(self) -> None:
        """Every tile or strip of every page lies inside the file: a truncated copy is caught
        from the TIFF's own index, not halfway through embedding."""
        size = self.path.stat().st_size
        try:
            with _quiet_tifffile():
                # Pyramid levels may be SubIFDs, which the file's page list does not hold.
                pages = [p for level in self._tif.series[0].levels for p in level.pages if p]
                pages += list(self._tif.pages)
        except _TIFF_ERRORS as exc:
            raise SlideReadError(
                f"slide {self.path} is damaged or truncated ({first_line(exc)}); copy the slide again"
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
        self._close_tiles()
        self._tif.close()

    def _close_tiles(self) -> None:
        for tiles in self._tiles:
            if tiles is not None:
                tiles.close()


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
        self.mpp = plausible_mpp(mpp) if mpp else None
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
        except _PIL_ERRORS as exc:
            raise SlideReadError(
                f"could not read {path} as an image ({first_line(exc)}); expected PNG, JPEG or a "
                "TIFF/SVS slide (convert very large JPEGs to a pyramidal TIFF)"
            ) from exc
        if width < 1 or height < 1:
            raise SlideReadError(f"{path} holds an empty image ({width}×{height} px)")
        self.levels = (SlideLevel(width=width, height=height, downsample=1.0),)
        self.mpp, self.mpp_source = None, None
        self._pixels: np.ndarray | None = None

    def pixels(self) -> np.ndarray:
        """The whole image as RGB uint8 (decoded on first use)."""
        if self._pixels is None:
            try:
                with Image.open(self.path) as image:
                    pixels = to_rgb_uint8(_pil_array(image))
                    if image.format == "PNG" and not png_data_complete(self.path):
                        raise SlideReadError(
                            f"{self.path} holds fewer pixels than its header claims "
                            f"({image.width} × {image.height} px): the file is damaged or cut "
                            "short; copy it again"
                        )
                self._pixels = pixels
            except _PIL_ERRORS as exc:
                raise SlideReadError(
                    f"could not decode {self.path} ({first_line(exc)}); the file is damaged or cut "
                    "short; copy it again"
                ) from exc
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
