"""scalefactors_json.json: Visium and Visium HD keys, checked to be positive numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import SCALEFACTOR_FIELDS
from tmescope.datasets.spaceranger_writer import write_scalefactors
from tmescope.errors import ScalefactorsError
from tmescope.io.scalefactors import Scalefactors, read_scalefactors

FIELDS = SCALEFACTOR_FIELDS

VISIUM_1_0 = {  # the real Space Ranger 1.0.0 file of the human heart sample
    "spot_diameter_fullres": 89.42751063343188,
    "tissue_hires_scalef": 0.150015,
    "fiducial_diameter_fullres": 144.45982486939,
    "tissue_lowres_scalef": 0.045004502,
}


def write_json(path: Path, payload: object) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


def test_visium_keys(tmp_path: Path) -> None:
    write_scalefactors(tmp_path / "s.json", VISIUM_1_0)
    sf = read_scalefactors(tmp_path / "s.json")
    assert sf.hires == VISIUM_1_0["tissue_hires_scalef"]
    assert sf.lowres == VISIUM_1_0["tissue_lowres_scalef"]
    assert sf.spot_diameter_fullres == VISIUM_1_0["spot_diameter_fullres"]
    assert sf.fiducial_diameter_fullres == VISIUM_1_0["fiducial_diameter_fullres"]
    assert sf.bin_size_um is None and sf.microns_per_pixel is None
    assert sf.raw == VISIUM_1_0


def test_visium_hd_keys_and_unknown_keys_kept(tmp_path: Path) -> None:
    payload = {
        "spot_diameter_fullres": 29.6,
        "bin_size_um": 8.0,
        "microns_per_pixel": 8.0 / 29.6,
        "tissue_hires_scalef": 0.08,
        "regist_target_img_scalef": 0.3,
        "something_new": "kept verbatim",
    }
    sf = read_scalefactors(write_json(tmp_path / "s.json", payload))
    assert sf.bin_size_um == 8.0
    assert sf.microns_per_pixel == pytest.approx(8.0 / 29.6)
    assert sf.lowres is None
    assert sf.raw == payload


def test_for_image() -> None:
    sf = Scalefactors(hires=0.2, lowres=None, spot_diameter_fullres=90.0)
    assert sf.for_image("fullres") == 1.0
    assert sf.for_image("hires") == 0.2
    with pytest.raises(ScalefactorsError, match="tissue_lowres_scalef"):
        sf.for_image("lowres")


def test_integers_are_numbers(tmp_path: Path) -> None:
    sf = read_scalefactors(
        write_json(tmp_path / "s.json", {"bin_size_um": 16, "tissue_hires_scalef": 1})
    )
    assert sf.bin_size_um == 16.0 and isinstance(sf.bin_size_um, float)


# --------------------------------------------------------------------------------------------
# Properties

positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(values=st.dictionaries(st.sampled_from(sorted(FIELDS)), positive))
def test_valid_scalefactors_round_trip(
    tmp_path_factory: pytest.TempPathFactory, values: dict
) -> None:
    path = tmp_path_factory.mktemp("sf") / "scalefactors_json.json"
    write_scalefactors(path, values)
    sf = read_scalefactors(path)
    for key, name in FIELDS.items():
        assert getattr(sf, name) == values.get(key)
    assert sf.raw == values


bad_values = st.one_of(
    st.floats(max_value=0.0),  # zero and negative
    st.just(math.nan),
    st.just(math.inf),
    st.integers(max_value=0),
    st.booleans(),
    st.text(max_size=5),
    st.lists(positive, max_size=2),
)


@settings(max_examples=50, deadline=None)
@given(
    key=st.sampled_from(sorted(FIELDS)),
    value=bad_values,
    others=st.dictionaries(st.sampled_from(sorted(FIELDS)), positive),
)
def test_non_positive_or_non_numbers_are_rejected(
    tmp_path_factory: pytest.TempPathFactory, key: str, value: object, others: dict
) -> None:
    path = tmp_path_factory.mktemp("sf") / "scalefactors_json.json"
    # json.dumps writes NaN and Infinity, as Python's json (and Space Ranger's) would read them
    write_json(path, {**others, key: value})
    with pytest.raises(ScalefactorsError, match=key) as info:
        read_scalefactors(path)
    assert isinstance(info.value, ValueError)
    assert "must be a" in str(info.value)
