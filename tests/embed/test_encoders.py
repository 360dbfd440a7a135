"""The encoder registry, tested over every entry (like timm's tests/test_models.py).

No test downloads anything or needs real weights: real models are built at full size only on
the meta device (no memory), and run with random weights at a toy width (``build_small``).
Every test sees an empty Hugging Face cache in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tmescope.embed.encoder import Encoder
from tmescope.embed.registry import (
    EncoderSpec,
    create_encoder,
    describe_encoders,
    encoder_fingerprint,
    get_encoder_spec,
    list_encoders,
)
from tmescope.embed.weights import build_seeded, file_sha256
from tmescope.errors import (
    GatedModelError,
    InvalidParameterError,
    UnknownEncoderError,
    WeightsNotFoundError,
)

# Parameter counts of the published models (lazyslide-models' registry, the model cards).
PUBLISHED_PARAMS = {
    "uni": 303.4e6,
    "uni2-h": 681.4e6,
    "virchow": 631.2e6,
    "virchow2": 631.2e6,
    "h-optimus-0": 1134.8e6,
    "h-optimus-1": 1134.8e6,
    "prov-gigapath": 1135.0e6,
    "phikon": 85.8e6,
    "phikon-v2": 303.4e6,
    "hibou-b": 85.7e6,
    # 25.6M with the ImageNet classifier, which the encoder drops (2048 x 1000 + 1000).
    "resnet50-imagenet": 25_557_032 - 2_049_000,
}
REAL = sorted(PUBLISHED_PARAMS)
TEST_ENCODERS = ["test-vit-small", "test-vit-tiny"]


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face cache at an empty folder: no test sees a user's real cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    return tmp_path / "hf_home" / "hub"


def _batch(spec: EncoderSpec, n: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, spec.input_px, spec.input_px, generator=generator)


def _small_encoder(spec: EncoderSpec, seed: int = 1) -> Encoder:
    return Encoder(build_seeded(spec.build_small, seed=seed), spec=spec, weights_id="test")


def test_registry_holds_the_real_and_test_entries() -> None:
    assert set(REAL) | set(TEST_ENCODERS) <= set(list_encoders())
    assert list_encoders() == sorted(list_encoders())


@pytest.mark.parametrize("name", REAL)
def test_full_architecture_has_the_published_size(name: str) -> None:
    spec = get_encoder_spec(name)
    with torch.device("meta"):  # full size, no memory, no weights
        encoder = Encoder(spec.build(), spec=spec, weights_id="meta")
        out = encoder(_batch(spec).to("meta"))
    n_params = sum(p.numel() for p in encoder.parameters())
    assert abs(n_params - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.005
    assert abs(spec.n_params - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.005
    assert out.shape == (2, spec.embed_dim)


@pytest.mark.parametrize("name", list_encoders())
def test_small_build_pools_as_declared(name: str) -> None:
    spec = get_encoder_spec(name)
    encoder = _small_encoder(spec)
    x = _batch(spec)
    with torch.inference_mode():
        tokens, n_prefix = encoder.tokens(x)
        out = encoder(x)
    width = tokens.shape[-1]
    assert out.shape == (2, width * (2 if spec.pooling == "cls+mean" else 1))
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if spec.pooling == "cls":
        torch.testing.assert_close(out, tokens[:, 0].float())
    if spec.pooling == "cls+mean":
        torch.testing.assert_close(out[:, width:], tokens[:, n_prefix:].mean(1).float())
    if spec.build_small is spec.build:  # test encoders and the ResNet are small already
        assert out.shape[1] == spec.embed_dim


@pytest.mark.parametrize("name", REAL)
def test_checkpoint_loads_through_the_user_path(name: str, tmp_path: Path) -> None:
    # The path a user's checkpoint of `name` takes, with the architecture at toy width.
    spec = get_encoder_spec(name)
    reference = _small_encoder(spec)
    state = {k: v.contiguous() for k, v in reference.backbone.state_dict().items()}
    # Published checkpoints also hold what the encoder drops (a classifier, a pooler).
    state |= {f"{prefix}weight": torch.zeros(2) for prefix in spec.unused_keys}
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    loaded = create_encoder(dataclasses.replace(spec, build=spec.build_small), weights=path)
    x = _batch(spec)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=0)
    assert loaded.weights_id == f"sha256:{file_sha256(path)}"
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_test_encoder_weights_round_trip(suffix: str, tmp_path: Path) -> None:
    spec = get_encoder_spec("test-vit-small")
    other = build_seeded(spec.build, seed=7)  # not the registry's seed: the file must be used
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(other.state_dict(), path)
    else:  # a training checkpoint: nested, with DDP's prefix
        state = {f"module.{k}": v for k, v in other.state_dict().items()}
        torch.save({"epoch": 3, "state_dict": state}, path)
    loaded = create_encoder("test-vit-small", weights=path)
    seeded = create_encoder("test-vit-small")
    x = _batch(spec)
    with torch.inference_mode():
        expected = Encoder(other, spec=spec, weights_id="x")(x)
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        assert not torch.allclose(seeded(x), expected)
    assert loaded.weights_id.startswith("sha256:")
    assert seeded.weights_id == "seed:0"


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(UnknownEncoderError, match=r"did you mean 'uni'") as caught:
        get_encoder_spec("unii")
    assert isinstance(caught.value, LookupError)
    with pytest.raises(UnknownEncoderError, match=r"'prov-gigapath'"):
        get_encoder_spec("gigapath")
    assert get_encoder_spec("UNI2_H").name == "uni2-h"


def test_missing_gated_model_says_how_to_get_it(empty_hf_cache: Path) -> None:
    with pytest.raises(GatedModelError) as caught:
        create_encoder("uni")
    message = str(caught.value)
    assert "\n" not in message
    for part in (
        "'uni'",
        str(empty_hf_cache),
        "https://huggingface.co/MahmoodLab/UNI",
        "download MahmoodLab/UNI",
        "--weights",
    ):
        assert part in message
    assert isinstance(caught.value, FileNotFoundError)


def test_missing_open_model_is_not_called_gated() -> None:
    with pytest.raises(WeightsNotFoundError) as caught:
        create_encoder("h-optimus-0")
    assert not isinstance(caught.value, GatedModelError)
    assert "licence" not in str(caught.value)


def _fake_snapshot(hub: Path, repo: str, tensors: dict[str, torch.Tensor], *, refs: bool) -> Path:
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    save_file(tensors, snapshot / "model.safetensors")
    if refs:
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text("0123456789abcdef")
    return snapshot / "model.safetensors"


@pytest.mark.parametrize("refs", [True, False], ids=["refs", "copied-without-refs"])
def test_hf_cache_snapshot_is_found_offline(empty_hf_cache: Path, refs: bool) -> None:
    base = get_encoder_spec("test-vit-tiny")
    spec = dataclasses.replace(base, name="fake-tiny", hf_repo="tmescope/fake-tiny", seed=None)
    model = build_seeded(base.build, seed=3)
    path = _fake_snapshot(empty_hf_cache, spec.hf_repo or "", model.state_dict(), refs=refs)
    encoder = create_encoder(spec)
    x = _batch(spec)
    with torch.inference_mode():
        expected = Encoder(model, spec=spec, weights_id="x")(x)
        torch.testing.assert_close(encoder(x), expected, rtol=0, atol=0)
    assert encoder.weights_id == f"sha256:{file_sha256(path)}"


def test_describe_reports_cached_weights(empty_hf_cache: Path) -> None:
    _fake_snapshot(empty_hf_cache, "MahmoodLab/UNI", {"x": torch.zeros(1)}, refs=True)
    rows = {row["name"]: row for row in describe_encoders()}
    assert set(rows) == set(list_encoders())
    assert rows["uni"]["weights_found"] is True
    assert rows["uni2-h"]["weights_found"] is False
    assert rows["test-vit-tiny"]["weights_found"] is None
    assert rows["virchow2"] | {"weights_found": None} == {
        "name": "virchow2",
        "description": rows["virchow2"]["description"],
        "dim": 2560,
        "input_px": 224,
        "mpp": 0.5,
        "pooling": "cls+mean",
        "precision": "fp16",
        "params": 631_200_000,
        "licence": "CC-BY-NC-ND-4.0",
        "gated": True,
        "hf_repo": "paige-ai/Virchow2",
        "weights_found": None,
    }
    json.dumps(list(rows.values()))


def test_test_encoders_are_deterministic_and_leave_the_rng_alone() -> None:
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = create_encoder("test-vit-tiny").state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(100)  # whatever the caller's random state, the weights are the same
    second = create_encoder("test-vit-tiny").state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_test_encoder_weights_are_the_same_in_another_process() -> None:
    code = (
        "from tmescope.embed.registry import create_encoder; "
        "e = create_encoder('test-vit-tiny'); "
        "print(sum(float(p.double().sum()) for p in e.parameters()).hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = sum(float(p.double().sum()) for p in create_encoder("test-vit-tiny").parameters())
    assert out.stdout.strip() == here.hex()


def test_bf16_autocast_stays_close_to_fp32() -> None:
    encoder = create_encoder("test-vit-small")
    x = _batch(encoder.spec, n=4)
    with torch.inference_mode():
        full = encoder(x)
        with encoder.autocast("bf16"):
            half = encoder(x)
    assert half.dtype == torch.float32
    relative = (half - full).norm() / full.norm()
    assert relative < 1e-2


def test_fingerprint_is_json_and_tells_weights_apart(tmp_path: Path) -> None:
    seeded = create_encoder("test-vit-tiny")
    fingerprint = encoder_fingerprint(seeded)
    assert json.loads(json.dumps(fingerprint)) == fingerprint
    assert fingerprint == {
        "model": "test-vit-tiny",
        "weights": "seed:0",
        "input_px": 224,
        "mpp": 0.5,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "pooling": "cls",
        "embed_dim": 192,
    }
    path = tmp_path / "other.safetensors"
    save_file(build_seeded(seeded.spec.build, seed=5).state_dict(), path)
    assert encoder_fingerprint(create_encoder("test-vit-tiny", weights=path)) != fingerprint


def test_wrong_input_size_is_refused() -> None:
    encoder = create_encoder("test-vit-tiny")
    with pytest.raises(InvalidParameterError, match=r"\(B, 3, 224, 224\).*\(2, 3, 256, 256\)"):
        encoder(torch.zeros(2, 3, 256, 256))


def test_listing_encoders_imports_no_model_library() -> None:
    code = (
        "import sys; from tmescope.embed.registry import describe_encoders; describe_encoders(); "
        "print([m for m in ('torch', 'timm', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
