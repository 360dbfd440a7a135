"""What ``tmescope embed`` takes: a Space Ranger folder (:class:`SampleInput`), an H&E-only slide
(:class:`SlideInput`) or a table of measured units beside its image (:class:`TableInput`: an
AnnData, a HEST-1k folder or a SpatialData), each checked before any encoder is built or store
opened, and opened lazily as a :class:`~tmescope.io.Sample` by :func:`open_input`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tmescope.errors import InvalidParameterError
from tmescope.io import Sample, read_visium
from tmescope.io.slide_sample import SlideSample, check_mpp, read_slide


@dataclass(frozen=True)
class SampleInput:
    """One sample to embed: its Space Ranger folder and, optionally, its full-resolution slide,
    its id (default: the run's folder) and its metadata (a sample sheet's other columns; kept in
    the store as ``extra["metadata"]``; ``None``: none given, a stored sample keeps its own)."""

    path: Path
    image: Path | None = None
    sample_id: str | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
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
) -> SampleInput | TableInput:
    """The input for a measured sample's ``path``, by its kind (see
    :func:`tmescope.io.input_kind.input_kind`): a Space Ranger folder, or a table + image."""
    from tmescope.io.input_kind import input_kind

    if input_kind(path) == "spaceranger":
        if mpp is not None or table is not None or spot_diameter_um is not None:
            raise InvalidParameterError(
                f"{path}: --mpp, --table and --spot-diameter are for AnnData, HEST and "
                "SpatialData inputs; a Space Ranger sample's µm per pixel comes from its image "
                "metadata or spot pitch"
            )
        return SampleInput(path, image=image, sample_id=sample_id, metadata=metadata)
    return TableInput(
        path, image=image, mpp=mpp, sample_id=sample_id, table=table,
        spot_diameter_um=spot_diameter_um, metadata=metadata,
    )  # fmt: skip


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
    return read_visium(item.path, image=item.image, sample_id=item.sample_id)


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
