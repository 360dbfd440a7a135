"""The encoder fingerprint: what makes two sets of embeddings comparable.

A store holds the embeddings of one encoder with one set of settings (model, weights, input
size, µm/px, normalisation, pooling …). The fingerprint is a flat JSON mapping written at the
store's root on creation; every append compares the writer's fingerprint with it field by field
so that embeddings of different models never mix in one store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from tmescope.errors import FingerprintMismatchError, InvalidParameterError

# Fields that name the model and its weights, most specific first: they head the error message.
_NAME_FIELDS = ("model", "name", "encoder")
_WEIGHTS_FIELDS = ("weights", "weights_hash", "weights_sha256")


def normalise_fingerprint(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """``fingerprint`` as stored: a JSON round trip, so tuples become lists and keys sort.

    Raises :class:`InvalidParameterError` for an empty mapping, non-string keys or values JSON
    cannot hold exactly (NaN, infinity, arbitrary objects).
    """
    return as_json_mapping(fingerprint, what="an encoder fingerprint", allow_empty=False)


def as_json_mapping(value: object, *, what: str, allow_empty: bool) -> dict[str, Any]:
    """``value`` after a JSON round trip, or :class:`InvalidParameterError` saying why not."""
    if not isinstance(value, Mapping) or not (value or allow_empty):
        raise InvalidParameterError(f"{what} must be a non-empty mapping, got {value!r}")
    if not all(isinstance(key, str) for key in value):
        raise InvalidParameterError(f"{what} must have string keys: {list(value)}")
    try:
        text = json.dumps(dict(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidParameterError(
            f"{what} must hold only JSON values (str, finite numbers, bool, None, lists, "
            f"dicts): {error}"
        ) from error
    normalised: dict[str, Any] = json.loads(text)
    return normalised


def field_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """One line per field that differs between two JSON mappings (a fingerprint); empty if equal."""
    lines = []
    for key in sorted(set(stored) | set(wanted)):
        old, new = stored.get(key, _MISSING), wanted.get(key, _MISSING)
        if not _same(old, new):
            lines.append(f"{key}: store has {_show(old)}, asked for {_show(new)}")
    return lines


def describe_fingerprint(fingerprint: Mapping[str, Any]) -> str:
    """A short human name: ``"uni2-h (weights sha256:ab12…)"`` or the sorted fields."""
    name = next((fingerprint[k] for k in _NAME_FIELDS if k in fingerprint), None)
    weights = next((fingerprint[k] for k in _WEIGHTS_FIELDS if k in fingerprint), None)
    if name is None:
        return ", ".join(f"{k}={fingerprint[k]!r}" for k in sorted(fingerprint))
    return f"{name} (weights {weights})" if weights is not None else str(name)


def check_fingerprint(stored: Mapping[str, Any], wanted: Mapping[str, Any], *, where: str) -> None:
    """Raise :class:`FingerprintMismatchError` unless the two fingerprints are equal."""
    differences = field_differences(stored, wanted)
    if not differences:
        return
    raise FingerprintMismatchError(
        f"{where} holds embeddings of {describe_fingerprint(stored)} but you asked for "
        f"{describe_fingerprint(wanted)}; differing fields: {'; '.join(differences)}. A store "
        "holds one encoder's embeddings: write to a new store, or embed with the encoder and "
        "settings the store was made with. Nothing was written."
    )


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _same(old: object, new: object) -> bool:
    # Numbers compare by value with a relative tolerance: 0.5 written as 0.5000000000000001 by
    # another tool is the same setting, and JSON does not tell an int 1 from a float 1.0.
    if isinstance(old, bool) or isinstance(new, bool):
        return old is new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return math.isclose(old, new, rel_tol=1e-9, abs_tol=0.0)
    return old == new


def _show(value: object) -> str:
    return "no value" if value is _MISSING else repr(value)
