"""What ``tmescope embed`` takes: a Space Ranger folder (:class:`SampleInput`), an H&E-only slide
(:class:`SlideInput`) or a table of measured units beside its image (:class:`TableInput`: an
AnnData, a HEST-1k folder or a SpatialData), each checked before any encoder is built or store
opened, opened lazily as a :class:`~tmescope.io.Sample` by :func:`open_input`, and what the store
keeps to open it again as it was (:func:`stored_extra`, read by
:func:`~tmescope.io.reopen.reopen_sample`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmescope.errors import InvalidParameterError
from tmescope.io import Sample, read_visium
from tmescope.io.layout import locate_spaceranger_files
from tmescope.io.reopen import HD_BIN_SIZE
from tmescope.io.slide_sample import SlideSample, check_mpp, read_slide


@dataclass(frozen=True)
class SampleInput:
    """One sample to embed: its Space Ranger folder and, optionally, its full-resolution slide,
    its id (default: the run's folder), its metadata (a sample sheet's other columns; kept in
    the store as ``extra["metadata"]``; ``None``: none given, a stored sample keeps its own) and,
    for a Visium HD run, its bin size in µm (default 8; see :func:`~tmescope.io.read_visium`)."""

    path: Path
    image: Path | None = None
    sample_id: str | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)
    bin_size_um: float | None = None

    def __post_init__(self) -> None:
        if self.bin_size_um is not None:
            # The run's own bin folders say which sizes it can give: read_visium's refusal
            # (a standard Visium run, a size neither written nor summable), before any encoder.
            locate_spaceranger_files(self.path, bin_size_um=self.bin_size_um)
        _check_metadata(self.metadata)


@dataclass(frozen=True)
class SlideInput:
    """One H&E-only slide to embed (no expression): its file, and optionally its sample id
    (default: the file name), µm/px (default: the slide's metadata) and metadata (as
    :class:`SampleInput`'s)."""

    path: Path
    sample_id: str | None = None
    mpp: float | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        check_mpp(self.mpp)  # before any encoder is built or store opened
        _check_metadata(self.metadata)


@dataclass(frozen=True)
class TableInput:
    """One sample given as a table of measured units beside an image: an AnnData ``.h5ad`` (or
    a HEST-1k folder and its ``sample_id``) with ``image`` and ``mpp`` when the file does not
    say them, or a SpatialData zarr (``table`` picks one of several tables). Metadata as
    :class:`SampleInput`'s."""

    path: Path
    image: Path | None = None
    mpp: float | None = None
    sample_id: str | None = None
    table: str | None = None
    spot_diameter_um: float | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        check_mpp(self.mpp)
        if self.spot_diameter_um is not None and not (0 < self.spot_diameter_um <= 1000):
            raise InvalidParameterError(
                f"--spot-diameter must be the measured units' diameter in µm (Visium 55), got "
                f"{self.spot_diameter_um}"
            )
        _check_metadata(self.metadata)


EmbedInput = SampleInput | SlideInput | TableInput


def embed_input(
    path: Path,
    *,
    image: Path | None = None,
    sample_id: str | None = None,
    mpp: float | None = None,
    table: str | None = None,
    spot_diameter_um: float | None = None,
    metadata: Mapping[str, str] | None = None,
    bin_size_um: float | None = None,
) -> SampleInput | TableInput:
    """The input for a measured sample's ``path``, by its kind (see
    :func:`tmescope.io.input_kind.input_kind`): a Space Ranger folder, or a table + image."""
    from tmescope.io.input_kind import input_kind

    kind = input_kind(path)
    if kind == "spaceranger":
        if mpp is not None or table is not None or spot_diameter_um is not None:
            raise InvalidParameterError(
                f"{path}: --mpp, --table and --spot-diameter are for AnnData, HEST and "
                "SpatialData inputs; a Space Ranger sample's µm per pixel comes from its image "
                "metadata or spot pitch"
            )
        return SampleInput(
            path, image=image, sample_id=sample_id, metadata=metadata, bin_size_um=bin_size_um
        )
    if bin_size_um is not None:
        raise InvalidParameterError(
            f"{path} is a{'n' if kind == 'anndata' else ''} {_KIND_NAMES.get(kind, kind)} input; "
            "--bin-size picks the bins of a Visium HD Space Ranger run: drop it (a SpatialData's "
            "HD bins are its tables: --table square_016um)"
        )
    return TableInput(
        path, image=image, mpp=mpp, sample_id=sample_id, table=table,
        spot_diameter_um=spot_diameter_um, metadata=metadata,
    )  # fmt: skip


_KIND_NAMES = {"anndata": "AnnData", "hest": "HEST-1k", "spatialdata": "SpatialData"}


def _check_metadata(metadata: Mapping[str, str] | None) -> None:
    """Refuse metadata the store cannot keep (before any encoder is built or store opened)."""
    if metadata is not None:
        from tmescope.store.feature_store import check_metadata

        check_metadata(metadata)


def open_input(item: EmbedInput) -> Sample | SlideSample:
    """The sample to embed, read lazily: a Space Ranger folder, a table beside its image, or an
    H&E-only slide."""
    if isinstance(item, SlideInput):
        return read_slide(item.path, sample_id=item.sample_id, mpp=item.mpp)
    if isinstance(item, TableInput):
        return _open_table(item)
    return read_visium(
        item.path, image=item.image, sample_id=item.sample_id, bin_size_um=item.bin_size_um
    )


def stored_extra(
    sample: Sample | SlideSample, metadata: Mapping[str, str] | None
) -> dict[str, Any]:
    """What the store keeps beside a sample's embeddings (``meta.extra``) to open it again as it
    was embedded, and its sheet's ``metadata``."""
    from tmescope.store.schema import METADATA, MPP_SOURCE

    extra: dict[str, Any] = {
        MPP_SOURCE: sample.mpp_source,
        "platform": sample.platform,
        "spot_diameter_um": sample.spot_diameter_um,
        "image_kind": sample.image_kind,
        "image": str(sample.slide.path),
    }
    if isinstance(sample, Sample) and sample.bin_size_um is not None:
        # Visium HD: reopened at the default 8 µm, a 16 µm sample would lose its units.
        extra[HD_BIN_SIZE] = sample.bin_size_um
    table = (sample.metadata or {}).get("table") if isinstance(sample, Sample) else None
    if table:  # a SpatialData's table: what reopening the sample needs when it holds several
        extra["table"] = str(table)
    return extra if metadata is None else extra | {METADATA: dict(metadata)}


def _open_table(item: TableInput) -> Sample:
    from tmescope.io.input_kind import input_kind

    if input_kind(item.path) == "spatialdata":
        from tmescope.io.spatialdata_sample import read_spatialdata

        if item.mpp is not None or item.spot_diameter_um is not None:
            raise InvalidParameterError(
                f"{item.path} is a SpatialData: its µm per pixel and units come from its "
                "elements; drop --mpp and --spot-diameter (--table picks the table, --image "
                "the image element)"
            )
        return read_spatialdata(
            item.path, table=item.table, sample_id=item.sample_id,
            image=None if item.image is None else str(item.image),
        )  # fmt: skip
    from tmescope.io.anndata_sample import read_anndata_sample

    if item.table is not None:
        raise InvalidParameterError(f"--table picks a SpatialData's table; {item.path} is not one")
    return read_anndata_sample(
        item.path, image=item.image, mpp=item.mpp, sample_id=item.sample_id,
        spot_diameter_um=item.spot_diameter_um,
    )  # fmt: skip
