"""Reading weights files safely and refusing the ones that do not fit."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tmescope.embed.registry import create_encoder, get_encoder_spec
from tmescope.embed.weights import build_seeded, file_sha256, load_weights, read_state_dict
from tmescope.errors import InputNotFoundError, WeightsError


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    return build_seeded(get_encoder_spec("test-vit-tiny").build, seed=0).state_dict()


def test_nested_and_prefixed_checkpoint_is_unwrapped(
    tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "ckpt.pt"
    nested = {f"_orig_mod.{k}": v for k, v in tiny_state.items()}
    torch.save({"model": nested, "optimizer_step": torch.tensor(10)}, path)
    encoder = create_encoder("test-vit-tiny", weights=path)
    assert all(torch.equal(encoder.backbone.state_dict()[k], v) for k, v in tiny_state.items())


def test_safetensors_is_recognised_by_content(
    tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "weights.bin"  # a safetensors file under a PyTorch-like name
    save_file(tiny_state, path)
    assert read_state_dict(path).keys() == tiny_state.keys()


def test_folder_holding_a_checkpoint_is_accepted(
    tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    torch.save(tiny_state, tmp_path / "pytorch_model.bin")
    encoder = create_encoder("test-vit-tiny", weights=tmp_path)
    assert encoder.weights_id == f"sha256:{file_sha256(tmp_path / 'pytorch_model.bin')}"


def test_weights_of_another_architecture_are_refused(
    tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    path = tmp_path / "tiny.safetensors"
    save_file(tiny_state, path)
    with pytest.raises(WeightsError, match=r"does not fit encoder 'test-vit-small'.*reg_token"):
        create_encoder("test-vit-small", weights=path)


def test_a_shape_that_differs_is_named(tiny_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    path = tmp_path / "wide.safetensors"
    save_file({**tiny_state, "cls_token": torch.zeros(1, 1, 100)}, path)
    with pytest.raises(WeightsError, match=r"cls_token has shape \(1, 1, 100\) in the file, "):
        create_encoder("test-vit-tiny", weights=path)


def test_missing_and_unexpected_keys_are_named(
    tiny_state: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    state = dict(tiny_state)
    del state["norm.weight"]
    state["head.weight"] = torch.zeros(3, 192)
    path = tmp_path / "broken.safetensors"
    save_file(state, path)
    with pytest.raises(WeightsError, match=r"1 missing keys \(first: norm\.weight\)") as caught:
        create_encoder("test-vit-tiny", weights=path)
    assert "1 unexpected keys (first: head.weight)" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_pickled_objects_are_never_loaded(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(
        WeightsError, match=r"Python objects besides tensors \(argparse\.Namespace\)"
    ):
        read_state_dict(path)


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_unreadable_file_is_a_weights_error(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=r"neither a safetensors file nor a PyTorch checkpoint"):
        read_state_dict(path)


def test_checkpoint_without_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(WeightsError, match=r"holds no state dict"):
        read_state_dict(path)


def test_missing_weights_path_is_reported(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"nope\.safetensors does not exist"):
        create_encoder("test-vit-tiny", weights=tmp_path / "nope.safetensors")
    with pytest.raises(InputNotFoundError, match=r"holds none of model\.safetensors"):
        create_encoder("test-vit-tiny", weights=tmp_path)


def test_sha256_of_a_hub_blob_is_its_name(tmp_path: Path) -> None:
    content = b"weights"
    digest = hashlib.sha256(content).hexdigest()
    blob = tmp_path / "blobs" / digest
    blob.parent.mkdir()
    blob.write_bytes(content)
    link = tmp_path / "model.safetensors"
    link.symlink_to(blob)
    assert file_sha256(link) == digest
    plain = tmp_path / "plain.bin"
    plain.write_bytes(content)
    assert file_sha256(plain) == digest


class _WithComputedBuffer(nn.Module):
    """A backbone with a buffer made at init and kept out of its state dict."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = get_encoder_spec("test-vit-tiny").build()
        self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)


def test_buffers_outside_the_state_dict_are_built_for_real(tmp_path: Path) -> None:
    spec = dataclasses.replace(get_encoder_spec("test-vit-tiny"), build=_WithComputedBuffer)
    original = build_seeded(_WithComputedBuffer, seed=0)
    path = tmp_path / "weights.safetensors"
    save_file(original.state_dict(), path)
    model, _ = load_weights(spec, path)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert torch.equal(model.get_buffer("scale"), torch.full((1,), 2.0))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in original.state_dict().items())
