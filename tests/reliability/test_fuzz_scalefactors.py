"""Fuzzing the scalefactors reader: a Space Ranger ``scalefactors_json.json`` with values of the
wrong type or range, keys missing, repeated or foreign, other encodings and damaged bytes reads as
what it says or is refused in one line."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from factories import SCALEFACTOR_FIELDS
from fuzzing import Damage, damages, fuzz_settings, read_or_refused, sometimes
from tmescope.datasets.spaceranger_writer import write_scalefactors
from tmescope.io.scalefactors import Scalefactors, read_scalefactors

SUBJECT = "scalefactors"
FIELDS = SCALEFACTOR_FIELDS
positive = st.floats(min_value=1e-9, max_value=1e300, allow_nan=False, allow_infinity=False)


@st.composite
def valid_factors(draw: st.DrawFn) -> dict[str, float]:
    """Space Ranger's four Visium keys, sometimes with the Visium HD ones."""
    keys = list(FIELDS)[:4] + (list(FIELDS)[4:] if draw(st.booleans()) else [])
    return {key: draw(positive) for key in keys}


# Replacement values as JSON text, and whether a reader must refuse them. ``None`` (null) reads
# as a missing key; huge numbers that still fit a float are read (the image check judges them).
BAD_VALUES = [
    '"0.5"', "true", "false", "[0.5]", '{"v": 0.5}', "NaN", "Infinity", "-Infinity", "0", "-0.0",
    "-1", "1e400", "-1e400", "1" + "0" * 400, "9" * 5000,
]  # fmt: skip
GOOD_VALUES = {"null": None, "1e300": 1e300, "7": 7.0, "2.5e-300": 2.5e-300}


def render(factors: dict[str, Any], overrides: dict[str, str], extra: str) -> str:
    """The JSON text, with some values replaced by raw JSON and ``extra`` members appended."""
    members = [
        f"{json.dumps(key)}: {overrides.get(key, json.dumps(value))}"
        for key, value in factors.items()
    ]
    return "{\n    " + ",\n    ".join(members + ([extra] if extra else [])) + "\n}\n"


@fuzz_settings(light=15, full=300)
@given(
    factors=valid_factors(),
    bad=st.dictionaries(st.sampled_from(list(FIELDS)[:4]), st.sampled_from(BAD_VALUES), max_size=2),
    good=st.dictionaries(st.sampled_from(list(FIELDS)[:4]), st.sampled_from(sorted(GOOD_VALUES))),
    dropped=st.sets(st.sampled_from(list(FIELDS))),
    extra=st.sampled_from(["", '"regist_target_img_scalef": 0.3', '"note": "é ünïcode"']),
    repeated=st.booleans(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1"]),
    cut=sometimes(st.floats(0.0, 1.0)),
)
def test_scalefactors_values(
    factors: dict[str, float],
    bad: dict[str, str],
    good: dict[str, str],
    dropped: set[str],
    extra: str,
    repeated: bool,
    encoding: str,
    cut: float | None,
) -> None:
    """Each change says what the reader must make of it: the values, or a refusal."""
    factors = {k: v for k, v in factors.items() if k not in dropped}
    good = {k: v for k, v in good.items() if k in factors and k not in bad}
    bad = {k: v for k, v in bad.items() if k in factors}
    overrides = {**good, **bad}
    if repeated and factors:
        key = next(iter(factors))
        extra = ", ".join(filter(None, [extra, f"{json.dumps(key)}: {json.dumps(factors[key])}"]))
    text = render(factors, overrides, extra)
    if cut is not None:
        text = text[: int(len(text) * cut)]
    refuse = (
        bool(bad)
        or (repeated and bool(factors))
        or (cut is not None and text.strip() != render(factors, overrides, extra).strip())
        or (encoding == "latin-1" and "é" in extra)  # not UTF-8: refused, not misread
    )
    expected = {**factors, **{k: GOOD_VALUES[v] for k, v in good.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scalefactors_json.json"
        path.write_bytes(text.encode(encoding))
        result = read_or_refused(SUBJECT, lambda: read_scalefactors(path))
    if refuse:
        assert result is None, f"accepted a file it should refuse: {result}"
        return
    assert result is not None, "refused a valid scalefactors file"
    for key, attribute in FIELDS.items():
        value = expected.get(key)
        assert getattr(result, attribute) == (None if value is None else float(value)), key


@fuzz_settings(light=10, full=200)
@given(
    factors=valid_factors(),
    shape=st.sampled_from(["[]", "[{}]", '"text"', "0.5", "null", "[" * 100_000, "{}"]),
)
def test_scalefactors_not_an_object(factors: dict[str, float], shape: str) -> None:
    """A list, a string, a number, a nesting deeper than the parser's stack: refused. An empty
    object reads as a file without scale factors."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scalefactors_json.json"
        path.write_text(shape, encoding="utf-8")
        result = read_or_refused(SUBJECT, lambda: read_scalefactors(path))
    if shape == "{}":
        assert result == Scalefactors(hires=None, lowres=None, spot_diameter_fullres=None)
    else:
        assert result is None


@fuzz_settings(light=10, full=300)
@given(factors=valid_factors(), damage=damages)
def test_damaged_scalefactors(factors: dict[str, float], damage: Damage) -> None:
    """Bytes flipped, inserted, cut or replaced: whatever reads holds positive finite numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scalefactors_json.json"
        write_scalefactors(path, factors)
        path.write_bytes(damage.apply(path.read_bytes()))
        result = read_or_refused(SUBJECT, lambda: read_scalefactors(path))
    if result is not None:
        for attribute in FIELDS.values():
            value = getattr(result, attribute)
            assert value is None or (
                isinstance(value, float) and math.isfinite(value) and value > 0
            )
