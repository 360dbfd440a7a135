"""Read ``scalefactors_json.json`` (Visium and Visium HD keys)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tmescope.errors import ScalefactorsError
from tmescope.io._keys import ScalefactorKeys as K
from tmescope.io._messages import first_line


@dataclass(frozen=True)
class Scalefactors:
    """Scale factors relating Space Ranger's images to the full-resolution pixel frame.

    ``hires`` and ``lowres`` multiply full-resolution pixel coordinates to give pixel coordinates
    in ``tissue_hires_image.png`` and ``tissue_lowres_image.png``.
    """

    hires: float | None
    lowres: float | None
    spot_diameter_fullres: float | None
    fiducial_diameter_fullres: float | None = None
    bin_size_um: float | None = None  # Visium HD
    microns_per_pixel: float | None = None  # Visium HD
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def for_image(self, kind: str) -> float:
        """Scale from full-resolution pixels to the pixels of image ``kind``."""
        if kind == "fullres":
            return 1.0
        value = {"hires": self.hires, "lowres": self.lowres}.get(kind)
        if value is None:
            key = K.HIRES if kind == "hires" else K.LOWRES
            raise ScalefactorsError(
                f"scalefactors lack {key!r}, needed to place spots on the {kind} image; "
                "pass the full-resolution image with --image instead"
            )
        return value

    def summed(self, *, from_um: float, to_um: float) -> Scalefactors:
        """The scale factors of ``to_um`` bins summed from these ``from_um`` bins (Visium HD):
        the same images and µm per pixel, the bin side (``spot_diameter_fullres``) scaled."""
        ratio = to_um / from_um
        diameter = (
            None if self.spot_diameter_fullres is None else self.spot_diameter_fullres * ratio
        )
        raw = dict(self.raw)
        raw[K.BIN_SIZE_UM] = float(to_um)
        if diameter is not None:
            raw[K.SPOT_DIAMETER] = diameter
        return replace(self, spot_diameter_fullres=diameter, bin_size_um=float(to_um), raw=raw)


def read_scalefactors(path: Path) -> Scalefactors:
    """Parse a scalefactors JSON file, checking that every value present is a positive number."""
    try:
        # From bytes, json detects UTF-8 (with or without a byte order mark), UTF-16 and UTF-32.
        raw = json.loads(Path(path).read_bytes(), object_pairs_hook=_refuse_repeated_keys)
    except _RepeatedKeyError as exc:
        raise ScalefactorsError(
            f"{path} names {exc.key!r} twice; expected each scale factor once, as Space Ranger "
            "writes them; copy the file again from the spatial/ folder"
        ) from exc
    except (OSError, ValueError, RecursionError) as exc:
        # ValueError: broken JSON, text that is not UTF-8/16/32, or a number of 4,300+ digits.
        raise ScalefactorsError(
            f"could not read {path} as JSON ({first_line(exc)}); expected Space Ranger's "
            "scalefactors_json.json; copy it again from the spatial/ folder"
        ) from exc
    if not isinstance(raw, dict):
        raise ScalefactorsError(f"{path} holds a {type(raw).__name__}, expected a JSON object")

    def number(key: str) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScalefactorsError(
                f"{path}: {key} must be a number, found {_short(value)}; check the file"
            )
        try:
            value = float(value)  # an integer beyond float's range overflows here
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or value <= 0:
            raise ScalefactorsError(
                f"{path}: {key} must be a positive number, found {_short(value)}; check the file"
            )
        return value

    return Scalefactors(
        hires=number(K.HIRES),
        lowres=number(K.LOWRES),
        spot_diameter_fullres=number(K.SPOT_DIAMETER),
        fiducial_diameter_fullres=number(K.FIDUCIAL_DIAMETER),
        bin_size_um=number(K.BIN_SIZE_UM),
        microns_per_pixel=number(K.MICRONS_PER_PIXEL),
        raw=raw,
    )


class _RepeatedKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON leaves a repeated name undefined (Python keeps the last): refuse rather than guess."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _RepeatedKeyError(key)
        result[key] = value
    return result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
