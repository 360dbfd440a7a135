"""Slide readers: one contract every backend passes, then formats, metadata and pixel types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from factories import write_fullres_tiff, write_png, write_random_bytes, write_tiff_plain
from tmescope.errors import InputNotFoundError, SlideReadError
from tmescope.io.slide import Slide, to_rgb_uint8
from tmescope.io.slide_backends import OpenSlideSlide, PilSlide, TiffSlide, open_slide

WIDTH, HEIGHT = 512, 384  # powers of two: pyramid levels have exact downsamples 1, 2, 4


def smooth_image(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """RGB uint8 with gradients and a few blobs: resampling it is well behaved."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 60 + 180 * xx / width
    g = 40 + 160 * yy / height
    b = 128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
    for cx, cy, rad in ((120, 100, 40), (360, 250, 60), (480, 40, 25)):
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad**2))
        r, g, b = r * (1 - 0.6 * blob), g * (1 - 0.7 * blob), b * (1 - 0.3 * blob)
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def resample(
    pixels: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> np.ndarray:
    """The reference: resample ``box = (x, y, w, h)`` of the full image straight to ``size``."""
    x, y, w, h = box
    image = Image.fromarray(pixels)
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR, box=(x, y, x + w, y + h)))


# --------------------------------------------------------------------------------------------
# The contract


class SlideContract:
    """What every backend must do; subclasses provide ``slide`` (and its source pixels)."""

    lossless = True

    @pytest.fixture
    def pixels(self) -> np.ndarray:
        return smooth_image()

    @pytest.fixture
    def slide(self, tmp_path: Path, pixels: np.ndarray) -> Slide:
        raise NotImplementedError

    def test_level_zero_is_the_image(self, slide: Slide) -> None:
        assert (slide.width, slide.height) == (WIDTH, HEIGHT)
        assert slide.levels[0].downsample == 1.0
        assert all(
            a.downsample < b.downsample
            for a, b in zip(slide.levels, slide.levels[1:], strict=False)
        )

    def test_read_level_gives_rgb_uint8(self, slide: Slide, pixels: np.ndarray) -> None:
        out = slide.read_level(0, 10, 20, 64, 32)
        assert out.shape == (32, 64, 3)
        assert out.dtype == np.uint8
        if self.lossless:
            np.testing.assert_array_equal(out, pixels[20:52, 10:74])

    def test_read_region_at_full_resolution_is_exact(
        self, slide: Slide, pixels: np.ndarray
    ) -> None:
        out = slide.read_region(100, 50, 128, 96, size=(128, 96))
        if self.lossless:
            np.testing.assert_array_equal(out, pixels[50:146, 100:228])

    def test_read_region_outside_the_image_is_white(self, slide: Slide, pixels: np.ndarray) -> None:
        out = slide.read_region(-40, -30, 80, 60, size=(80, 60))
        assert out.shape == (60, 80, 3)
        assert (out[:30, :] == 255).all() and (out[:, :40] == 255).all()
        if self.lossless:
            np.testing.assert_array_equal(out[30:, 40:], pixels[:30, :40])
        far = slide.read_region(WIDTH + 10, HEIGHT + 10, 50, 50, size=(20, 20))
        assert (far == 255).all()

    def test_read_region_crossing_the_far_edge_is_padded(self, slide: Slide) -> None:
        out = slide.read_region(WIDTH - 16, HEIGHT - 16, 32, 32, size=(32, 32))
        assert (out[16:, :] == 255).all() and (out[:, 16:] == 255).all()
        assert (out[:16, :16] != 255).any()

    @pytest.mark.parametrize(
        ("box", "size"),
        [
            ((0, 0, WIDTH, HEIGHT), (128, 96)),  # whole image, 4× down
            ((33.5, 17.25, 301.0, 207.0), (100, 70)),  # fractional box, ~3× down
            ((200, 100, 160, 160), (64, 64)),  # 2.5× down
            ((50.3, 60.7, 40.0, 40.0), (80, 80)),  # 2× up
        ],
    )
    def test_read_region_matches_a_direct_resample(
        self, slide: Slide, pixels: np.ndarray, box: tuple[float, ...], size: tuple[int, int]
    ) -> None:
        out = slide.read_region(*box, size=size)
        expected = resample(pixels, box, size)
        assert out.shape == (size[1], size[0], 3)
        difference = np.abs(out.astype(float) - expected.astype(float))
        assert difference.mean() < 3.0, difference.mean()
        assert np.percentile(difference, 99) < 20

    def test_thumbnail_keeps_the_aspect_ratio(self, slide: Slide) -> None:
        thumb = slide.thumbnail(128)
        assert thumb.shape == (96, 128, 3)

    def test_best_level_is_the_coarsest_fine_enough(self, slide: Slide) -> None:
        for downsample in (0.5, 1.0, 1.9, 2.0, 3.9, 4.0, 100.0):
            level = slide.best_level(downsample)
            fine = [i for i, lv in enumerate(slide.levels) if lv.downsample <= downsample + 1e-9]
            expected = max(fine, key=lambda i: slide.levels[i].downsample) if fine else 0
            assert level == expected

    def test_closing_twice_is_harmless(self, slide: Slide) -> None:
        with slide as opened:
            assert opened is slide
        slide.close()


class TestPyramidalTiff(SlideContract):
    @pytest.fixture
    def slide(self, tmp_path: Path, pixels: np.ndarray) -> Slide:
        path = write_fullres_tiff(tmp_path / "slide.tif", pixels, mpp=0.5, n_levels=3)
        with open_slide(path) as slide:
            yield slide

    def test_is_a_lazy_pyramid(self, slide: Slide) -> None:
        assert isinstance(slide, TiffSlide)
        assert [lv.downsample for lv in slide.levels] == [1.0, 2.0, 4.0]
        assert slide.mpp == pytest.approx(0.5)
        assert slide.mpp_source == "tiff:XResolution"

    @pytest.mark.parametrize(
        ("region", "size", "level"), [(512, 128, 2), (256, 128, 1), (200, 128, 0)]
    )
    def test_read_region_reads_the_best_level(
        self, slide: Slide, monkeypatch: pytest.MonkeyPatch, region: int, size: int, level: int
    ) -> None:
        seen: list[int] = []
        original = slide.read_level

        def spy(lv: int, *args: int) -> np.ndarray:
            seen.append(lv)
            return original(lv, *args)

        monkeypatch.setattr(slide, "read_level", spy)
        slide.read_region(0, 0, region, region, size=(size, size))
        assert seen == [level]


class TestJpegPyramidalTiff(SlideContract):
    lossless = False

    @pytest.fixture
    def slide(self, tmp_path: Path, pixels: np.ndarray) -> Slide:
        path = write_fullres_tiff(tmp_path / "slide.tif", pixels, mpp=0.5, compression="jpeg")
        with open_slide(path) as slide:
            yield slide


class TestPng(SlideContract):
    @pytest.fixture
    def slide(self, tmp_path: Path, pixels: np.ndarray) -> Slide:
        write_png(tmp_path / "image.png", pixels)
        with open_slide(tmp_path / "image.png") as slide:
            yield slide

    def test_backend_and_no_resolution(self, slide: Slide) -> None:
        assert isinstance(slide, PilSlide)
        assert len(slide.levels) == 1
        assert slide.mpp is None and slide.mpp_source is None


class TestOpenSlide(SlideContract):
    """OpenSlide reads a generic tiled TIFF's level 0 (it ignores SubIFD levels)."""

    @pytest.fixture
    def slide(self, tmp_path: Path, pixels: np.ndarray) -> Slide:
        pytest.importorskip("openslide", reason="OpenSlide is the 'slides' extra")
        path = write_fullres_tiff(tmp_path / "slide.tif", pixels, mpp=0.5)
        with OpenSlideSlide(path) as slide:
            yield slide


# --------------------------------------------------------------------------------------------
# Opening: dispatch and failures


def test_open_slide_sniffs_tiff_bytes_behind_another_suffix(tmp_path: Path) -> None:
    path = write_fullres_tiff(tmp_path / "slide.tif", smooth_image(), mpp=0.5)
    renamed = path.rename(tmp_path / "slide.img")
    with open_slide(renamed) as slide:
        assert isinstance(slide, TiffSlide)


def test_missing_image_is_input_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="does not exist") as info:
        open_slide(tmp_path / "nope.tif")
    assert isinstance(info.value, FileNotFoundError)


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(SlideReadError, match="is a folder") as info:
        open_slide(tmp_path)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize("name", ["fake.png", "fake.tif", "fake.svs", "fake.jpg"])
def test_random_bytes_are_unreadable(tmp_path: Path, name: str) -> None:
    path = write_random_bytes(tmp_path / name)
    with pytest.raises(SlideReadError, match="could not read") as info:
        open_slide(path)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize("ome", [False, True])
def test_tiff_with_many_channels_is_not_brightfield(tmp_path: Path, ome: bool) -> None:
    path = write_tiff_plain(
        tmp_path / "multiplex.ome.tif",
        np.zeros((8, 32, 32), np.uint16),
        ome=ome,
        metadata={"axes": "CYX"},
    )
    with pytest.raises(SlideReadError, match="8 channels") as info:
        open_slide(path)
    assert isinstance(info.value, OSError)


def test_a_refused_tiff_is_closed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    original = tifffile.TiffFile.close

    def close(self: tifffile.TiffFile) -> None:
        closed.append(self.filename)
        original(self)

    monkeypatch.setattr(tifffile.TiffFile, "close", close)
    path = write_tiff_plain(
        tmp_path / "multiplex.tif", np.zeros((8, 16, 16), np.uint8), metadata={"axes": "CYX"}
    )
    with pytest.raises(SlideReadError):
        open_slide(path)
    assert closed == ["multiplex.tif"]


# --------------------------------------------------------------------------------------------
# Resolution metadata


@pytest.mark.parametrize(
    ("kwargs", "mpp", "source"),
    [
        (
            {"resolution": (1e4 / 0.25, 1e4 / 0.25), "resolutionunit": "CENTIMETER"},
            0.25,
            "tiff:XResolution",
        ),
        (
            {"resolution": (25_400 / 0.5, 25_400 / 0.5), "resolutionunit": "INCH"},
            0.5,
            "tiff:XResolution",
        ),
        (
            {"resolution": (1000 / 2.0, 1000 / 2.0), "resolutionunit": "MILLIMETER"},
            2.0,
            "tiff:XResolution",
        ),
        ({"resolution": (72, 72), "resolutionunit": "INCH"}, None, None),  # screen default
        ({}, None, None),
    ],
)
def test_tiff_resolution_tags(
    tmp_path: Path, kwargs: dict, mpp: float | None, source: str | None
) -> None:
    path = write_tiff_plain(tmp_path / "a.tif", smooth_image(64, 48), photometric="rgb", **kwargs)
    with open_slide(path) as slide:
        assert slide.mpp == (pytest.approx(mpp) if mpp else None)
        assert slide.mpp_source == source


@pytest.mark.parametrize(
    ("size", "unit", "mpp"), [(0.25, "µm", 0.25), (250.0, "nm", 0.25), (0.5, None, 0.5)]
)
def test_ome_tiff_physical_size(tmp_path: Path, size: float, unit: str | None, mpp: float) -> None:
    metadata: dict[str, object] = {"axes": "YXS", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit:
        metadata |= {"PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}
    path = write_tiff_plain(
        tmp_path / "a.ome.tif", smooth_image(64, 48), ome=True, photometric="rgb", metadata=metadata
    )
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
    with open_slide(path) as slide:
        assert slide.mpp == pytest.approx(mpp)
        assert slide.mpp_source == "ome:PhysicalSizeX"
        np.testing.assert_array_equal(slide.read_level(0, 0, 0, 64, 48), smooth_image(64, 48))


# --------------------------------------------------------------------------------------------
# Pixel types: everything reads as RGB uint8


def rgba_image() -> tuple[np.ndarray, np.ndarray]:
    """An RGBA image and its expected composite over white."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (200, 40, 100)
    rgba[:, :8, 3] = 255  # opaque
    rgba[:, 8:, 3] = 0  # transparent → white
    rgba[:4, 8:, 3] = 128  # half
    expected = np.empty((16, 16, 3), np.uint8)
    expected[:, :8] = (200, 40, 100)
    expected[:, 8:] = 255
    expected[:4, 8:] = np.rint(np.array([200, 40, 100]) * 128 / 255 + 255 * (1 - 128 / 255))
    return rgba, expected


def grey_ramp(dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.linspace(0, top, 16 * 16).astype(dtype).reshape(16, 16)


def as_rgb(grey: np.ndarray) -> np.ndarray:
    if grey.dtype == np.uint16:
        grey = np.rint(grey / 65535 * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def write_image(path: Path, pixels: np.ndarray) -> Path:
    if path.suffix == ".png":
        write_png(path, pixels)
        return path
    photometric = "rgb" if pixels.ndim == 3 and pixels.shape[2] in (3, 4) else "minisblack"
    extras = {"extrasamples": ["unassalpha"]} if pixels.ndim == 3 and pixels.shape[2] == 4 else {}
    return write_tiff_plain(path, pixels, photometric=photometric, **extras)


@pytest.mark.parametrize(
    ("suffix", "kind"),
    [(s, k) for s in (".png", ".tif") for k in ("rgba", "grey", "grey16")] + [(".tif", "rgb16")],
)  # PIL writes no 16-bit RGB PNG
def test_pixel_types_read_as_rgb_uint8(tmp_path: Path, suffix: str, kind: str) -> None:
    if kind == "rgba":
        pixels, expected = rgba_image()
    elif kind == "grey":
        pixels = grey_ramp()
        expected = as_rgb(pixels)
    elif kind == "grey16":
        pixels = grey_ramp(np.uint16)
        expected = as_rgb(pixels)
    else:
        pixels = np.stack(
            [grey_ramp(np.uint16), grey_ramp(np.uint16)[::-1], grey_ramp(np.uint16).T], -1
        )
        expected = np.rint(pixels / 65535 * 255).astype(np.uint8)
    path = write_image(tmp_path / f"image{suffix}", pixels)
    with open_slide(path) as slide:
        out = slide.read_level(0, 0, 0, 16, 16)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    np.testing.assert_allclose(out.astype(int), expected.astype(int), atol=1)


def test_palette_png_reads_its_colours(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4] = (255, 0, 0)
    rgb[:, 4:] = (0, 0, 255)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(
        tmp_path / "p.png"
    )
    with open_slide(tmp_path / "p.png") as slide:
        np.testing.assert_array_equal(slide.read_level(0, 0, 0, 8, 8), rgb)


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (np.full((2, 2), 0.5, np.float32), 128),  # floats in 0–1
        (np.full((2, 2, 3), 200.0, np.float64), 200),  # floats in 0–255
        (np.ones((2, 2), bool), 255),
        (np.full((2, 2, 2), [0, 0], np.uint8), 255),  # grey + alpha 0 → white
        (np.full((2, 2, 1), 77, np.uint8), 77),
    ],
)
def test_to_rgb_uint8(pixels: np.ndarray, expected: int) -> None:
    out = to_rgb_uint8(pixels)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert (out == expected).all()


def test_to_rgb_uint8_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match="expected an"):
        to_rgb_uint8(np.zeros((2, 2, 5), np.uint8))
