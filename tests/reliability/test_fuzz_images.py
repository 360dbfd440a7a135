"""Fuzzing the image readers: PNG and TIFF (plain and tiled pyramids) in every pixel layout,
named for another format, with dimensions no image has, or with damaged bytes, open and read as
RGB or are refused in one line — never another exception, a hang or an unbounded allocation."""

from __future__ import annotations

import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from factories import write_fullres_tiff, write_png, write_tiff_plain
from fuzzing import Damage, damages, fuzz_settings, read_or_refused, sometimes
from tmescope.io.slide import Slide
from tmescope.io.slide_backends import open_slide

SUBJECT = "images (TIFF/PNG)"
LAYOUTS = ("rgb", "rgba", "grey", "grey16", "float")
MAX_WHOLE_READ_PX = 4_000_000  # a damaged header may claim any size: read it whole below this


@st.composite
def images(draw: st.DrawFn) -> np.ndarray:
    """Small random pixels in one of the layouts slides come in."""
    width, height = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    layout = draw(st.sampled_from(LAYOUTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if layout == "float":
        return rng.random((height, width, 3), dtype=np.float32)
    channels = {"rgb": 3, "rgba": 4, "grey": 1, "grey16": 1}[layout]
    dtype = np.uint16 if layout == "grey16" else np.uint8
    pixels = rng.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype)
    return pixels[:, :, 0] if channels == 1 else pixels


def write_image(folder: Path, pixels: np.ndarray, fmt: str, name: str) -> Path:
    path = folder / name
    if fmt == "png" and pixels.dtype != np.float32:
        write_png(path, pixels)
    elif (
        fmt == "pyramid" and pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
    ):
        write_fullres_tiff(path, pixels, mpp=0.5, n_levels=2)
    else:
        write_tiff_plain(path, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")
    return path


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose header claims another size, its checksum made right again."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return data
    header = struct.pack(">II", width, height) + data[24:29]
    chunk = b"IHDR" + header
    return (
        data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]
    )


def read_everything(slide: Slide) -> tuple[np.ndarray, np.ndarray | None]:
    """What tmescope does with a slide: check it, read a region and a thumbnail."""
    with slide:
        slide.check_complete()
        if slide.width * slide.height <= MAX_WHOLE_READ_PX:
            whole = slide.read_region(
                0, 0, slide.width, slide.height, size=(slide.width, slide.height)
            )
            return whole, slide.thumbnail(16)
        return slide.read_region(0, 0, 32, 32, size=(32, 32)), None


def assert_rgb(pixels: np.ndarray, shape: tuple[int, int]) -> None:
    assert pixels.dtype == np.uint8 and pixels.shape == (*shape, 3)


@fuzz_settings(light=15, full=300)
@given(
    pixels=images(),
    fmt=st.sampled_from(["png", "tiff", "pyramid"]),
    name=st.sampled_from(["he.png", "he.tif", "he.svs", "he.jpg", "he"]),
    damage=sometimes(damages),
)
def test_images(pixels: np.ndarray, fmt: str, name: str, damage: Damage | None) -> None:
    """Opened by content whatever the name; RGB uint8 pixels read back exactly; damaged bytes
    read as some RGB image or are refused."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(Path(tmp), pixels, fmt, name)
        if damage is not None:
            path.write_bytes(damage.apply(path.read_bytes()))
        result = read_or_refused(SUBJECT, lambda: read_everything(open_slide(path)))
    if damage is None:
        assert result is not None, "refused a valid image"
    if result is None:
        return
    whole, thumbnail = result
    if thumbnail is not None:
        assert (
            thumbnail.dtype == np.uint8 and thumbnail.ndim == 3 and max(thumbnail.shape[:2]) <= 16
        )
    if damage is None:
        assert_rgb(whole, pixels.shape[:2])
        if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8:
            np.testing.assert_array_equal(whole, pixels)


HUGE_SIZES = [
    (2**31 - 1, 1), (1, 2**31 - 1), (100_000, 100_000), (20_000, 20_000), (12_000, 9_000),
    (0, 5), (5, 0), (71, 71),
]  # fmt: skip


@fuzz_settings(light=4, full=100)
@given(
    pixels=images(), size=st.sampled_from(HUGE_SIZES), name=st.sampled_from(["he.png", "he.tif"])
)
def test_png_claiming_a_larger_size(pixels: np.ndarray, size: tuple[int, int], name: str) -> None:
    """A PNG header claiming no pixels, or more than its data hold (up to billions): refused,
    without the memory such an image would need."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(Path(tmp), pixels, "png", name)
        path.write_bytes(with_png_size(path.read_bytes(), *size))
        result = read_or_refused(SUBJECT, lambda: read_everything(open_slide(path)))
    if pixels.dtype != np.float32:  # float pixels are written as TIFF: nothing was changed
        assert result is None, f"read a PNG claiming {size} px"


def test_png_size_rewrite_keeps_a_valid_file() -> None:
    pixels = np.zeros((5, 7, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(Path(tmp), pixels, "png", "he.png")
        path.write_bytes(with_png_size(path.read_bytes(), 7, 5))
        with Image.open(path) as image:
            image.load()
            assert image.size == (7, 5)
