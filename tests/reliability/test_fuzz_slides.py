"""Fuzzing H&E-only slides (``read_slide``): the µm/px a slide states in its SVS description,
OME-XML or TIFF resolution tags, written as anything from a plain number to text, NaN, a unit
no one uses or a figure no microscope has, is read when plausible and otherwise refused in one
line (asking for ``--mpp``); damaged slide bytes are read or refused, never another exception."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from hypothesis import given
from hypothesis import strategies as st

from factories import write_fullres_tiff
from fuzzing import Damage, damages, fuzz_settings, read_or_refused
from tmescope.io.slide_sample import read_slide

SUBJECT = "H&E-only slides"
PLAUSIBLE = (0.05, 50.0)

# How the figure is written: numbers, numbers with junk, non-numbers, implausible values.
MPP_TEXTS = [
    "0.2500", "0.5", " 0.5 ", "2.5e-1", "1", "49.9", "abc", "1.2.3", "--", "nan", "inf", "-inf",
    "1e999", "-0.5", "0", "", "1e-300", "0,5", "1_000", "0x1p-2", "５",
]  # fmt: skip
OME_UNITS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "pixel": None, "reference frame": None}


def plausible(value: float | None) -> float | None:
    """What a correct reader makes of a figure in µm/px: the figure, or nothing."""
    if value is None or not math.isfinite(value):
        return None
    return value if PLAUSIBLE[0] <= value <= PLAUSIBLE[1] else None


def number(text: str) -> float | None:
    """The figure a text states, read as strictly as the reader must (no hex, no underscores)."""
    if "_" in text or "x" in text.lower():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def svs_description(width: int, height: int, mpp_text: str) -> str:
    return (
        f"Aperio Image Library v12.0.15\r\n{width}x{height} [0,0 {width}x{height}] (240x240) "
        f"JPEG/RGB Q=70|AppMag = 20|MPP = {mpp_text}|Filename = case"
    )


def ome_description(width: int, height: int, mpp_text: str, unit: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/'
        'OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" '
        f'Type="uint8" SizeX="{width}" SizeY="{height}" SizeC="3" SizeZ="1" SizeT="1" '
        f'PhysicalSizeX="{mpp_text}" PhysicalSizeXUnit="{unit}" PhysicalSizeY="{mpp_text}" '
        'Interleaved="true"><Channel ID="Channel:0:0" SamplesPerPixel="3"/>'
        '<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>'
    )


def pixels_of(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)


@fuzz_settings(light=10, full=300)
@given(
    kind=st.sampled_from(["svs", "ome", "tags"]),
    mpp_text=st.sampled_from(MPP_TEXTS),
    unit=st.sampled_from(sorted(OME_UNITS)),
    dpcm=st.sampled_from([0.0, 1.0, 72 / 2.54, 4e4, 2e4, 1e9]),  # pixels per cm
    given_mpp=st.none() | st.sampled_from([0.25, 0.04, 51.0, -1.0, 0.0, math.nan, math.inf]),
    seed=st.integers(0, 2**16),
)
def test_slide_resolution(
    kind: str, mpp_text: str, unit: str, dpcm: float, given_mpp: float | None, seed: int
) -> None:
    """The slide's µm/px is the figure it states when plausible; ``mpp`` given by the user wins
    when it is a plausible figure and is refused otherwise; with neither, refused."""
    pixels = pixels_of(seed)
    height, width = pixels.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "tags":
            path = Path(tmp) / "case.tif"
            tifffile.imwrite(
                path,
                pixels,
                photometric="rgb",
                resolution=(dpcm, dpcm),
                resolutionunit="CENTIMETER",
            )
            stated = plausible(1e4 / dpcm) if dpcm > 1 else None
        else:
            path = Path(tmp) / ("case.svs" if kind == "svs" else "case.ome.tif")
            text = mpp_text.strip() if kind == "svs" else mpp_text
            description = (
                svs_description(width, height, text)
                if kind == "svs"
                else ome_description(width, height, text, unit)
            )
            # As bytes: tifffile takes text as 7-bit ASCII only, slide scanners write UTF-8.
            tifffile.imwrite(
                path, pixels, photometric="rgb", description=description.encode(), metadata=None
            )
            scale = 1.0 if kind == "svs" else OME_UNITS[unit]
            value = number(mpp_text.strip())
            stated = plausible(None if value is None or scale is None else value * scale)
        sample = read_or_refused(SUBJECT, lambda: read_slide(path, mpp=given_mpp))
        if sample is not None:
            patch = sample.read_patch(width / 2, height / 2, size_um=10 * sample.mpp, size_px=8)
            assert patch.shape == (8, 8, 3) and patch.dtype == np.uint8
            sample.close()
    expected = plausible(given_mpp) if given_mpp is not None else stated
    if expected is None:
        assert sample is None, f"accepted µm/px {sample.mpp if sample else None}"
    else:
        assert sample is not None, "refused a slide with a plausible µm/px"
        assert math.isclose(sample.mpp, expected, rel_tol=1e-9)


@fuzz_settings(light=8, full=200)
@given(damage=damages, seed=st.integers(0, 2**16), levels=st.integers(1, 3))
def test_damaged_slide(damage: Damage, seed: int, levels: int) -> None:
    """A pyramidal slide with damaged bytes: read (its patches RGB) or refused."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.tif"
        write_fullres_tiff(
            path, np.repeat(np.repeat(pixels_of(seed), 6, 0), 6, 1), mpp=0.5, n_levels=levels
        )
        path.write_bytes(damage.apply(path.read_bytes()))

        def read() -> np.ndarray:
            with read_slide(path) as sample:
                return sample.read_patch(100, 100, size_um=50, size_px=16)

        patch = read_or_refused(SUBJECT, read)
    if patch is not None:
        assert patch.shape == (16, 16, 3) and patch.dtype == np.uint8
