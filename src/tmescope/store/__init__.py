"""The Zarr v3 cohort store: embeddings, spot tables and counts of every sample of a cohort.

``CohortStore.open`` opens (or creates) a store; ``begin_sample`` returns a resumable
``SampleWriter``; the ``read_*`` methods return numpy arrays and AnnData. The format is in
``schema.py`` and ``docs/store-format.md``. This room never imports torch.
"""

from tmescope.store.feature_store import CohortStore
from tmescope.store.rows import SampleRows
from tmescope.store.schema import (
    DEFAULT_CHUNK_ROWS,
    SCHEMA_VERSION,
    RowKind,
    SampleMeta,
    SampleRecord,
    SampleStatus,
)
from tmescope.store.summary import SampleSummary, StoreInfo
from tmescope.store.writer import SampleWriter

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "SCHEMA_VERSION",
    "CohortStore",
    "RowKind",
    "SampleMeta",
    "SampleRecord",
    "SampleRows",
    "SampleStatus",
    "SampleSummary",
    "SampleWriter",
    "StoreInfo",
]
