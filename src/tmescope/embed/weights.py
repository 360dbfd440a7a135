"""Weights: where they are, reading them safely, and loading them strictly.

A weights file is a ``.safetensors`` file or a PyTorch checkpoint read with
``torch.load(..., weights_only=True)`` (tensors and plain containers only, never arbitrary
pickled objects). A state dict may be nested under a common key (``state_dict``, ``model``, …)
and carry a wrapper prefix (``module.`` from DDP, ``_orig_mod.`` from ``torch.compile``, …):
both are undone, then the dict must fit the architecture exactly (strict loading).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tmescope.embed.hf_cache import find_cached_file, hf_hub_cache
from tmescope.errors import (
    GatedModelError,
    InputNotFoundError,
    WeightsError,
    WeightsNotFoundError,
)

if TYPE_CHECKING:
    from tmescope.embed.registry import EncoderSpec

# Keys under which training code commonly nests the state dict, tried in this order.
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "module", "teacher")
# Wrapper prefixes, stripped when every key carries one and no key of the architecture does.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "trunk.")
_SHA256_BLOB = re.compile(r"[0-9a-f]{64}")
# How torch's weights-only unpickler names a class it refuses to load.
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def locate_weights(spec: EncoderSpec, weights: str | Path | None) -> Path | None:
    """The weights file for ``spec``: ``weights`` if given, else its Hugging Face cache.

    ``weights`` may be a folder holding one of ``spec.weight_files``. Returns None only for a
    seeded test encoder with nothing given; a real model with no weights anywhere raises
    :class:`WeightsNotFoundError` (:class:`GatedModelError` when gated) on one line.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            for filename in spec.weight_files:
                if (path / filename).is_file():
                    return path / filename
            raise InputNotFoundError(
                f"weights folder {path} holds none of {', '.join(spec.weight_files)}: "
                "pass the checkpoint file itself"
            )
        if not path.is_file():
            raise InputNotFoundError(
                f"weights file {path} does not exist: check the path given for {spec.name}"
            )
        return path
    if spec.hf_repo is not None:
        cached = find_cached_file(spec.hf_repo, spec.weight_files)
        if cached is not None:
            return cached
    if not spec.needs_weights:
        return None
    raise _missing_weights(spec)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unnested from a training checkpoint when needed."""
    if _is_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except SafetensorError as error:
            raise WeightsError(
                f"{path} is not a readable safetensors file ({error}): re-download or re-save it"
            ) from error
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = _UNSAFE_GLOBAL.search(str(error))
        if found is None:
            raise _unreadable(path, error) from error
        raise WeightsError(
            f"{path} holds Python objects besides tensors ({found.group(1)}), which tmescope "
            "never unpickles (weights_only=True): re-save just the weights, e.g. "
            "`torch.save(model.state_dict(), path)` or safetensors' `save_file`"
        ) from error
    except (RuntimeError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise _unreadable(path, error) from error
    return _unnest(checkpoint, path)


def load_weights(spec: EncoderSpec, path: Path) -> tuple[nn.Module, str]:
    """``spec.build()`` with the weights of ``path`` loaded strictly, and their id.

    The architecture is built on the meta device (no memory, no random init) and takes the
    file's tensors as they are, so even a billion-parameter model loads with one copy in memory.
    """
    state_dict = read_state_dict(path)
    with torch.device("meta"):
        model = spec.build()
    state_dict = fit_state_dict(model, state_dict, spec=spec, source=path)
    model.load_state_dict(state_dict, strict=True, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        # A buffer outside the state dict (computed at init) stayed on meta: build for real.
        with torch.device("cpu"):
            model = spec.build()
        model.load_state_dict(state_dict, strict=True)
    return model.float(), f"sha256:{file_sha256(path)}"


def fit_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    spec: EncoderSpec,
    source: Path | str,
) -> dict[str, torch.Tensor]:
    """``state_dict`` with wrapper prefixes and ``spec.unused_keys`` removed, checked against
    ``model``: a missing or unexpected key, or a shape that differs, raises :class:`WeightsError`.
    """
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    fitted = dict(state_dict)
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in fitted) and not any(
            k.startswith(prefix) for k in expected
        ):
            fitted = {k.removeprefix(prefix): v for k, v in fitted.items()}
    fitted = {k: v for k, v in fitted.items() if not k.startswith(spec.unused_keys)}
    missing = [k for k in expected if k not in fitted]
    unexpected = [k for k in fitted if k not in expected]
    what = f"{source} does not fit encoder {spec.name!r}"
    fix = f"pass the checkpoint of {spec.hf_repo or spec.name} (built as: {spec.description})"
    if missing or unexpected:
        raise WeightsError(
            f"{what}: {len(missing)} missing keys (first: {_first(missing)}), "
            f"{len(unexpected)} unexpected keys (first: {_first(unexpected)}); {fix}"
        )
    for key, shape in expected.items():
        if tuple(fitted[key].shape) != shape:
            raise WeightsError(
                f"{what}: {key} has shape {tuple(fitted[key].shape)} in the file, "
                f"{shape} in the architecture; {fix}"
            )
    return fitted


def build_seeded(build: Callable[[], nn.Module], *, seed: int | None) -> nn.Module:
    """``build()`` on the CPU with the CPU generator seeded: identical in every process.

    The caller's random state is left as it was.
    """
    if seed is None:
        raise ValueError("build_seeded needs a seed: only test encoders build without weights")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        with torch.device("cpu"):
            return build()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (a Hugging Face LFS blob is named by it: no need to re-read)."""
    resolved = path.resolve()
    if resolved.parent.name == "blobs" and _SHA256_BLOB.fullmatch(resolved.name):
        return resolved.name
    digest = hashlib.sha256()
    with resolved.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unnest(checkpoint: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(checkpoint, Mapping) and not _is_state_dict(checkpoint):
        nested = next((checkpoint[k] for k in _NESTING_KEYS if k in checkpoint), None)
        if nested is None:
            break
        checkpoint = nested
    if not isinstance(checkpoint, Mapping) or not _is_state_dict(checkpoint):
        keys = list(checkpoint)[:5] if isinstance(checkpoint, Mapping) else type(checkpoint)
        raise WeightsError(
            f"{path} holds no state dict (found {keys}); expected tensors by name, maybe under "
            f"one of {', '.join(_NESTING_KEYS)}: re-save with `torch.save(model.state_dict(), path)`"
        )
    return {str(k): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}


def _is_safetensors(path: Path) -> bool:
    # A safetensors file opens with an 8-byte header length, then the JSON header: '{'.
    with path.open("rb") as handle:
        return handle.read(9)[8:] == b"{"


def _unreadable(path: Path, error: Exception) -> WeightsError:
    text = str(error)
    # torch's weights-only unpickler buries the reason after a long preamble.
    reason = text.split("WeightsUnpickler error:")[-1].strip().split("\n")[0] if text else ""
    return WeightsError(
        f"{path} is neither a safetensors file nor a PyTorch checkpoint "
        f"({reason or type(error).__name__}): check the file (a truncated download?)"
    )


def _is_state_dict(mapping: Mapping[Any, Any]) -> bool:
    return bool(mapping) and all(isinstance(v, torch.Tensor) for v in mapping.values())


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", …" if len(keys) > n else "") if keys else "none"


def _missing_weights(spec: EncoderSpec) -> WeightsNotFoundError:
    repo = spec.hf_repo
    looked = "no --weights file was given"
    if repo is not None:
        looked += (
            f" and the Hugging Face cache {hf_hub_cache()} holds no snapshot of {repo} with "
            f"{' or '.join(spec.weight_files)}"
        )
    get = "pass its checkpoint with --weights PATH (Python: weights=PATH)"
    if repo is not None:
        licence = (
            f"accept the licence on https://huggingface.co/{repo}, then " if spec.gated else ""
        )
        get = (
            f"{licence}run `hf download {repo}` (older: `huggingface-cli download {repo}`) on a "
            f"machine with internet and copy the cache here (or point HF_HOME at it), or {get}"
        )
    error = GatedModelError if spec.gated else WeightsNotFoundError
    return error(f"no weights for encoder {spec.name!r}: {looked}; to get them, {get}")
