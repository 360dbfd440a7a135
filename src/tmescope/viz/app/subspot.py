"""What the viewer asks of a sample's sub-spot maps, whoever computes them, and which requests
for them make sense.

Predicting a sample's bins joins the store, the model and its sub-spot model, which is the job
layer's work (``tmescope.jobs.serve_analysis.ViewerSubspot``). The app gets an object with the
methods of :class:`SubspotMaps`, or ``None`` when it was started without a model; it checks the
layer and the population names (:func:`check_feature`) before asking for values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, cast

import numpy as np

from tmescope.errors import InvalidParameterError
from tmescope.viz.app.sample_data import FeatureNotFoundError

SubspotLayer = Literal["populations", "uncertainty", "image", "interface"]
SUBSPOT_LAYERS: tuple[SubspotLayer, ...] = ("populations", "uncertainty", "image", "interface")
PAIR_SEP = "|"  # an interface feature is "A|B", as adata_interface_maps keys it


@dataclass(frozen=True)
class SubspotBins:
    """A sample's bins: their size, the model's populations and each bin's centre."""

    bin_um: float
    um_per_px: float
    populations: tuple[str, ...]
    xy: np.ndarray  # (n_bins, 2) float (x, y), full-resolution px: the frame of the spots

    @property
    def bin_px(self) -> float:
        """The side of a bin in full-resolution pixels."""
        return self.bin_um / self.um_per_px


class SubspotMaps(Protocol):
    @property
    def available(self) -> bool:
        """Whether the model has a sub-spot model (else the methods below raise, saying how
        to train one)."""
        ...

    @property
    def populations(self) -> tuple[str, ...]:
        """The populations every sample's maps show (known without predicting any), so that
        the page can list them before a sample's bins are asked for."""
        ...

    def bins(self, sample_id: str) -> SubspotBins:
        """The sample's bins (its maps are predicted on the first request and kept)."""
        ...

    def values(self, sample_id: str, layer: SubspotLayer, feature: str) -> np.ndarray:
        """``(n_bins,)`` float: a population's share, its spread over the ensemble, its
        image-only share, or the interface score of the pair ``"A|B"``, in :meth:`bins` order.
        ``layer`` and ``feature`` are checked by :func:`check_feature` before."""
        ...


def check_layer(layer: str) -> SubspotLayer:
    """``layer`` when it is one of :data:`SUBSPOT_LAYERS`."""
    if layer not in SUBSPOT_LAYERS:
        raise InvalidParameterError(
            f"layer must be one of {', '.join(SUBSPOT_LAYERS)}, got {layer!r}"
        )
    return cast(SubspotLayer, layer)


def check_feature(layer: SubspotLayer, feature: str, populations: tuple[str, ...]) -> str:
    """``feature`` when it names a population (two distinct ones, ``"A|B"``, for an interface);
    otherwise an error that lists the populations."""
    known = ", ".join(populations)
    if layer != "interface":
        if feature not in populations:
            raise FeatureNotFoundError(
                f"no population {feature!r} in the sub-spot model; its populations are {known}"
            )
        return feature
    parts = feature.split(PAIR_SEP)
    if len(parts) != 2 or parts[0] == parts[1]:
        raise InvalidParameterError(
            f"an interface feature is two different populations as A{PAIR_SEP}B (e.g. "
            f"{PAIR_SEP.join(populations[:2])}), got {feature!r}"
        )
    for name in parts:
        if name not in populations:
            raise FeatureNotFoundError(
                f"no population {name!r} in the sub-spot model; its populations are {known}"
            )
    return feature
