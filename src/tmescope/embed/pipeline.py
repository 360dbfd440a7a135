"""Batched inference that keeps the model busy: read ahead on threads, compute on the device.

Reading (decode tiles, cut, resample) runs on background threads with a bounded number of
batches in flight, so it overlaps with model compute and memory stays bounded whatever the
slide size. Batches move as uint8 and are normalised on the device. On CUDA: pinned memory,
non-blocking copies, channels-last and autocast at the model's precision. The CPU path never
depends on any of that.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from tmescope.cpus import reader_threads
from tmescope.embed.patches import PatchPlan
from tmescope.errors import InvalidParameterError
from tmescope.io import Sample
from tmescope.io.slide_sample import SlideSample

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "bf16", "fp16"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"--device {device} asked for a GPU but PyTorch sees none (torch {torch.__version__}); "
            "use --device cpu or auto"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise InvalidParameterError(f"--device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


def resolve_precision(
    precision: Precision, *, model_precision: str, device: torch.device
) -> torch.dtype | None:
    """The autocast dtype, or ``None`` for plain fp32.

    ``auto`` uses the model's own precision on CUDA and fp32 on CPU (CPU autocast is slower
    than fp32 on most CPUs); an explicit bf16/fp16 is honoured on both.
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise InvalidParameterError(
            f"--precision must be auto, fp32, bf16 or fp16, got {precision!r}"
        )
    if precision == "auto":
        precision = model_precision if device.type == "cuda" else "fp32"  # type: ignore[assignment]
    if precision == "fp16" and device.type == "cpu":
        raise InvalidParameterError(
            "fp16 autocast needs a GPU; use --precision bf16 or fp32 on CPU"
        )
    return _DTYPES.get(precision)


@dataclass(frozen=True)
class BatchReader:
    """Reads batches of patches of one sample on ``readers`` threads, ``prefetch`` batches ahead.

    ``readers=None`` takes :func:`tmescope.cpus.reader_threads`: at most two, never more than
    the thread budget (one on one core); 0 reads in the consuming thread.
    """

    sample: Sample | SlideSample
    plan: PatchPlan
    readers: int | None = None
    prefetch: int = 4
    prepare: Callable[[np.ndarray], Any] | None = None  # applied on the reader threads

    def read_prepared(self, rows: slice) -> Any:
        """The batch ``rows``, passed through ``prepare`` when there is one."""
        batch = self.read(rows)
        return self.prepare(batch) if self.prepare is not None else batch

    def read(self, rows: slice) -> np.ndarray:
        """Patches ``rows`` of the plan: ``(B, size_px, size_px, 3)`` uint8."""
        px = self.plan.size_px
        centres = self.plan.centres[rows]
        out = np.empty((len(centres), px, px, 3), dtype=np.uint8)
        for i, (x, y) in enumerate(centres):
            out[i] = self.sample.read_patch(x, y, size_um=self.plan.size_um, size_px=px)
        return out

    def iter_batches(self, batches: Sequence[slice]) -> Iterator[Any]:
        """Yield the batches in order, reading later ones while earlier ones are consumed."""
        readers = reader_threads() if self.readers is None else self.readers
        if readers <= 0:
            yield from (self.read_prepared(rows) for rows in batches)
            return
        with ThreadPoolExecutor(readers, thread_name_prefix="tmescope-read") as pool:
            pending: deque[Future[Any]] = deque()
            todo = iter(batches)
            for rows in todo:
                pending.append(pool.submit(self.read_prepared, rows))
                if len(pending) >= self.prefetch:
                    break
            while pending:
                batch = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(self.read_prepared, nxt))
                yield batch


class Embedder:
    """A frozen encoder on a device, turning uint8 patch batches into float32 embeddings."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.device = device
        self.autocast = autocast
        self.model = model.eval().to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        # (3,) for NHWC numpy batches on a CPU; (1, 3, 1, 1) for NCHW tensors on the device.
        self._np_scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).astype(np.float32)
        self._np_shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(
            np.float32
        )
        self._scale = (
            (1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))).view(1, 3, 1, 1).to(device)
        )
        self._shift = (
            (torch.tensor(mean, dtype=torch.float32) / torch.tensor(std))
            .view(1, 3, 1, 1)
            .to(device)
        )

    def prepare(self, patches: np.ndarray) -> torch.Tensor:
        """``(B, H, W, 3)`` uint8 → normalised ``(B, 3, H, W)`` float32 on the device.

        On a CPU this runs on the reader threads (see :class:`BatchReader`), with numpy, whose
        loops release the GIL and stay single-threaded: torch ops here would compete with the
        model for torch's intra-op thread pool. The result is a channels-last view, as is
        the CUDA path's.
        """
        if self.device.type == "cpu":
            b, h, w, c = patches.shape
            # Per-channel constants repeated along a whole row, so that numpy's inner loop runs
            # over W × 3 values instead of 3: thirteen times faster than broadcasting (3,).
            scale, shift = np.tile(self._np_scale, w), np.tile(self._np_shift, w)
            x = patches.reshape(b, h, w * c).astype(np.float32)
            x *= scale
            x -= shift
            return torch.from_numpy(x.reshape(b, h, w, c)).permute(0, 3, 1, 2)
        gpu = torch.from_numpy(patches).pin_memory().to(self.device, non_blocking=True)
        return gpu.permute(0, 3, 1, 2).float().mul_(self._scale).sub_(self._shift)

    @property
    def prepares_on_readers(self) -> bool:
        """Whether readers should normalise (CPU) or leave uint8 for the device (CUDA)."""
        return self.device.type == "cpu"

    def __call__(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 patches ``(B, H, W, 3)`` (or prepared tensors) → ``(B, dim)`` float32."""
        x = self.prepare(batch) if isinstance(batch, np.ndarray) else batch
        with torch.inference_mode(), self._precision():
            out = self.model(x)
        return out.float().cpu().numpy()

    def _precision(self) -> Any:
        """The autocast context of this embedder's precision (none for fp32)."""
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)


class GridEmbedder(Embedder):
    """An :class:`Embedder` that also returns each patch's token grid, projected to ``k`` wide.

    ``projection`` ``(D, k)`` (or ``None``: the tokens as they are) is applied on the device,
    so only ``k``-wide tokens travel back.
    """

    def __init__(
        self, model: torch.nn.Module, *, projection: np.ndarray | None = None, **kwargs: Any
    ) -> None:
        super().__init__(model, **kwargs)
        self._projection = (
            torch.from_numpy(projection).to(self.device) if projection is not None else None
        )

    def embed_with_grid(self, batch: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(B, dim)`` float32 embeddings and ``(B, g, g, k)`` float32 token grids."""
        x = self.prepare(batch) if isinstance(batch, np.ndarray) else batch
        with torch.inference_mode(), self._precision():
            pooled, grid = self.model.forward_with_grid(x)  # type: ignore[operator]
        grid = grid.float()
        if self._projection is not None:
            grid = grid @ self._projection  # (B, g, g, k)
        return pooled.float().cpu().numpy(), grid.cpu().numpy()


def plan_batches(
    n_rows: int, *, chunk_rows: int, batch_size: int, chunks: Iterable[int]
) -> list[slice]:
    """Batches inside the given store chunks, never straddling a chunk boundary.

    A resumed run re-forms exactly the batches of an uninterrupted one, so its embeddings are
    bit-identical (a row's result can depend on the batch it was computed in).
    """
    if batch_size < 1:
        raise InvalidParameterError(f"--batch-size must be at least 1, got {batch_size}")
    batches: list[slice] = []
    for chunk in chunks:
        start, stop = chunk * chunk_rows, min((chunk + 1) * chunk_rows, n_rows)
        batches.extend(slice(b, min(b + batch_size, stop)) for b in range(start, stop, batch_size))
    return batches
