"""µm/px from the spot pitch (hexagonal Visium, square Visium HD bins) and its agreement check."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import hex_lattice, square_lattice
from tmescope.errors import ResolutionError, TmescopeWarning
from tmescope.io.resolution import check_agreement, fit_array_to_pixels, mpp_from_spot_pitch


def transformed(
    spots: pd.DataFrame, matrix: np.ndarray, offset: tuple[float, float]
) -> pd.DataFrame:
    out = spots.copy()
    xy = spots[["x", "y"]].to_numpy(float) @ np.asarray(matrix, float).T + np.asarray(offset)
    out["x"], out["y"] = xy[:, 0], xy[:, 1]
    return out


@pytest.mark.filterwarnings("error::tmescope.errors.TmescopeWarning")
@pytest.mark.parametrize("mpp", [0.2527, 0.5, 0.725, 1.0, 4.0])
def test_hex_lattice_gives_its_mpp(mpp: float) -> None:
    spots = hex_lattice(mpp=mpp, origin_px=(1234.5, 678.9))
    assert mpp_from_spot_pitch(spots, platform="visium") == pytest.approx(mpp, rel=1e-9)


@pytest.mark.filterwarnings("error::tmescope.errors.TmescopeWarning")
@pytest.mark.parametrize("bin_um", [2, 8, 16])
def test_square_bins_give_their_mpp(bin_um: int) -> None:
    spots = square_lattice(5, bin_um=bin_um, mpp=0.2738)
    assert mpp_from_spot_pitch(spots, platform="visium_hd", pitch_um=bin_um) == pytest.approx(
        0.2738, rel=1e-9
    )


def test_hd_needs_the_bin_size() -> None:
    with pytest.raises(ResolutionError, match="bin size"):
        mpp_from_spot_pitch(square_lattice(3, bin_um=8, mpp=0.5), platform="visium_hd")


def test_a_subset_of_spots_is_enough() -> None:
    spots = hex_lattice(8, 8, mpp=0.8).sample(frac=0.3, random_state=1)
    assert mpp_from_spot_pitch(spots, platform="visium") == pytest.approx(0.8, rel=1e-9)


def test_fit_recovers_the_affine_map() -> None:
    spots = hex_lattice(4, 4, mpp=1.0, origin_px=(10.0, 20.0))
    coef = fit_array_to_pixels(spots)
    assert coef.shape == (3, 2)
    np.testing.assert_allclose(coef[0], [50.0, 0.0], atol=1e-9)  # per array_col
    np.testing.assert_allclose(coef[1], [0.0, 50 * math.sqrt(3)], atol=1e-9)  # per array_row
    np.testing.assert_allclose(coef[2], [10.0, 20.0], atol=1e-9)


@pytest.mark.parametrize(
    "spots",
    [
        hex_lattice(1, 9),  # one array row
        hex_lattice(2, 1).iloc[:2],  # two spots
        hex_lattice(1, 1),
    ],
    ids=["one-row", "two-spots", "one-spot"],
)
def test_degenerate_lattices_cannot_give_mpp(spots: pd.DataFrame) -> None:
    with pytest.raises(ResolutionError, match="do not span two array directions") as info:
        mpp_from_spot_pitch(spots, platform="visium")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("columns", [("x", "y"), ("x",)])
def test_constant_pixels_cannot_give_mpp(columns: tuple[str, ...]) -> None:
    spots = hex_lattice(3, 3)
    for column in columns:
        spots[column] = 100.0
    with pytest.raises(ResolutionError, match="do not change with the array coordinates"):
        mpp_from_spot_pitch(spots, platform="visium")


def test_irregular_lattice_warns() -> None:
    spots = transformed(hex_lattice(4, 4, mpp=1.0), np.diag([1.0, 1.5]), (0.0, 0.0))
    with pytest.warns(TmescopeWarning, match="not regular"):
        mpp_from_spot_pitch(spots, platform="visium")


@settings(max_examples=50, deadline=None)
@given(
    mpp=st.floats(0.1, 10.0),
    angle=st.floats(-math.pi, math.pi),
    flip=st.booleans(),
    offset=st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)),
    n_rows=st.integers(2, 7),
    n_per_row=st.integers(2, 7),
    first_row=st.integers(0, 70),
)
def test_any_similarity_transform_keeps_the_mpp(
    mpp: float,
    angle: float,
    flip: bool,
    offset: tuple[float, float],
    n_rows: int,
    n_per_row: int,
    first_row: int,
) -> None:
    """Rotated, mirrored and shifted lattices (a slide placed any way) give the true µm/px."""
    spots = hex_lattice(n_rows, n_per_row, mpp=mpp, first_row=first_row)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = rotation @ np.diag([-1.0, 1.0]) if flip else rotation
    with warnings.catch_warnings():
        warnings.simplefilter("error", TmescopeWarning)
        found = mpp_from_spot_pitch(transformed(spots, matrix, offset), platform="visium")
    assert found == pytest.approx(mpp, rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    mpp=st.floats(0.1, 5.0), bin_um=st.sampled_from([2, 8, 16]), angle=st.floats(-math.pi, math.pi)
)
def test_any_rotated_square_grid_keeps_the_mpp(mpp: float, bin_um: int, angle: float) -> None:
    spots = square_lattice(4, bin_um=bin_um, mpp=mpp)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    found = mpp_from_spot_pitch(
        transformed(spots, rotation, (5.0, 5.0)), platform="visium_hd", pitch_um=bin_um
    )
    assert found == pytest.approx(mpp, rel=1e-6)


@pytest.mark.filterwarnings("error::tmescope.errors.TmescopeWarning")
def test_agreement_within_five_percent_is_silent() -> None:
    check_agreement(0.5, 0.49, image="slide.tif")
    check_agreement(0.5, 0.52, image="slide.tif")


def test_disagreement_warns_with_both_values() -> None:
    with pytest.warns(
        TmescopeWarning, match=r"slide\.tif says 0\.5000 µm/px but the spot pitch gives 0\.2500"
    ):
        check_agreement(0.5, 0.25, image="slide.tif")
