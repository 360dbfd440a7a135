"""The read-ahead batch pipeline and the embedder, with a small torch model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tmescope.embed.patches import plan_patches
from tmescope.embed.pipeline import (
    BatchReader,
    Embedder,
    plan_batches,
    resolve_device,
    resolve_precision,
)
from tmescope.errors import InvalidParameterError
from tmescope.io import read_visium

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class MeanColour(torch.nn.Module):
    """The 'null encoder': mean over pixels, (B, 3, H, W) -> (B, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_batches_never_straddle_chunks() -> None:
    batches = plan_batches(10, chunk_rows=4, batch_size=3, chunks=[0, 2])
    assert [(b.start, b.stop) for b in batches] == [(0, 3), (3, 4), (8, 10)]
    with pytest.raises(InvalidParameterError):
        plan_batches(10, chunk_rows=4, batch_size=0, chunks=[0])


@pytest.mark.parametrize("readers", [0, 2])
def test_read_ahead_yields_the_same_batches_in_order(
    synth_cohort: list[Path], readers: int
) -> None:
    folder = synth_cohort[0]
    with read_visium(folder, image=next(folder.glob("*_he.tif"))) as sample:
        plan = plan_patches(sample, size_um=112, size_px=64)
        batches = plan_batches(len(plan), chunk_rows=16, batch_size=5, chunks=range(4))
        reader = BatchReader(sample, plan, readers=readers, prefetch=2)
        got = list(reader.iter_batches(batches))
        assert [len(b) for b in got] == [b.stop - b.start for b in batches]
        for rows, batch in zip(batches, got, strict=True):
            x, y = plan.centres[rows.start]
            first = sample.read_patch(x, y, size_um=112, size_px=64)
            assert np.array_equal(batch[0], first)


def test_embedder_normalises_on_the_device() -> None:
    patches = np.zeros((2, 8, 8, 3), np.uint8)
    patches[1] = 255
    embedder = Embedder(MeanColour(), mean=MEAN, std=STD, device=torch.device("cpu"))
    out = embedder(patches)
    expected = np.array([[-m / s for m, s in zip(MEAN, STD, strict=True)],
                         [(1 - m) / s for m, s in zip(MEAN, STD, strict=True)]])  # fmt: skip
    assert out.dtype == np.float32
    assert out == pytest.approx(expected, rel=1e-5)


def test_bf16_autocast_on_cpu_stays_close_to_fp32() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 8, stride=8), torch.nn.GELU(), torch.nn.Flatten(),
        torch.nn.LazyLinear(64),
    )  # fmt: skip
    patches = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    fp32 = Embedder(model, mean=MEAN, std=STD, device=torch.device("cpu"))(patches)
    bf16 = Embedder(model, mean=MEAN, std=STD, device=torch.device("cpu"), autocast=torch.bfloat16)(
        patches
    )
    relative = np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32)
    assert relative < 1e-2


def test_device_and_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert resolve_device("auto") == cpu
        with pytest.raises(InvalidParameterError, match="sees none"):
            resolve_device("cuda")
    with pytest.raises(InvalidParameterError):
        resolve_device("tpu")
    assert resolve_precision("auto", model_precision="bf16", device=cpu) is None
    assert resolve_precision("bf16", model_precision="fp32", device=cpu) is torch.bfloat16
    assert (
        resolve_precision("auto", model_precision="fp16", device=torch.device("cuda"))
        is torch.float16
    )
    with pytest.raises(InvalidParameterError, match="fp16 autocast needs a GPU"):
        resolve_precision("fp16", model_precision="fp32", device=cpu)
