"""H&E-only slides: µm/px from the metadata or --mpp, the sample id, truncated files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factories import write_fullres_tiff, write_tiff_plain
from tmescope.errors import InvalidParameterError, ResolutionError, SlideReadError
from tmescope.io.slide_sample import HE_ONLY, read_slide, slide_sample_id


def tissue(width: int = 512, height: int = 384) -> np.ndarray:
    pixels = np.full((height, width, 3), 245, np.uint8)
    pixels[100:300, 150:400] = (190, 90, 160)  # a pink block of "tissue"
    return pixels


def test_the_resolution_comes_from_the_metadata_or_mpp(tmp_path: Path) -> None:
    path = write_fullres_tiff(tmp_path / "case 7.ome.tif", tissue(), mpp=0.25)
    with read_slide(path) as slide:
        assert (slide.mpp, slide.mpp_source) == (0.25, "tiff:XResolution")
        assert slide.sample_id == "case_7" and slide.platform == HE_ONLY
        assert slide.n_spots == 0 and slide.spots.empty and slide.counts is None
        patch = slide.read_patch(275, 200, size_um=25.0, size_px=50)  # 100 px: inside the block
        np.testing.assert_array_equal(
            patch[20:30, 20:30], np.broadcast_to((190, 90, 160), (10, 10, 3))
        )
    with read_slide(path, mpp=0.5, sample_id="b12") as slide:
        assert (slide.mpp, slide.mpp_source, slide.sample_id) == (0.5, "--mpp", "b12")


def test_a_slide_without_resolution_names_mpp(tmp_path: Path) -> None:
    path = write_tiff_plain(tmp_path / "plain.tif", tissue())
    with pytest.raises(ResolutionError, match="pass --mpp"):
        read_slide(path)
    with read_slide(path, mpp=0.5) as slide:
        assert slide.mpp == 0.5
    with pytest.raises(InvalidParameterError, match="--mpp must be"):
        read_slide(path, mpp=0.0)


@pytest.mark.parametrize("keep", [0.002, 0.5, 0.98])
def test_a_truncated_slide_is_refused_before_any_pixel(tmp_path: Path, keep: float) -> None:
    whole = write_fullres_tiff(tmp_path / "whole.tif", tissue(1024, 768), mpp=0.5).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(SlideReadError, match=r"truncated|damaged|could not read"):
        read_slide(cut)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("case_12.ome.tiff", "case_12"), ("B-3.svs", "B-3"), ("slide (2).ndpi", "slide__2_"),
     ("scan.v2.TIF", "scan.v2")],
)  # fmt: skip
def test_the_sample_id_is_the_file_name(name: str, expected: str) -> None:
    assert slide_sample_id(Path(name)) == expected
