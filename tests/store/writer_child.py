"""A second process that writes one sample into a cohort store: the store tests' other writer.

    python writer_child.py STORE SAMPLE_ID DATA.npz DELAY_S

Prints ``begun``, then ``chunk <i>`` after each chunk (sleeping ``DELAY_S`` before it) and
``done``, one flushed line each, so that the test can act at a known moment. Exits 3, printing
``locked``, when another live process holds the sample.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from tmescope.errors import StoreLockedError
from tmescope.store import CohortStore, SampleMeta, SampleRows


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()  # the parent waits on each line


def main(store_path: str, sample_id: str, data_path: str, delay: float) -> int:
    data = np.load(data_path)
    store = CohortStore.open(store_path, mode="a", fingerprint=json.loads(str(data["fingerprint"])))
    rows = SampleRows(
        coords=data["coords"],
        barcodes=data["barcodes"],
        kind=data["kind"],
        tissue_fraction=data["tissue_fraction"],
    )
    embeddings = data["embeddings"]
    try:
        writer = store.begin_sample(
            sample_id,
            rows=rows,
            meta=SampleMeta(**json.loads(str(data["meta"]))),
            dim=embeddings.shape[1],
            chunk_rows=int(data["chunk_rows"]),
        )
    except StoreLockedError as error:
        _say(f"locked: {error}")
        return 3
    if writer is None:
        _say("skipped")
        return 0
    _say("begun")
    with writer:
        for i in writer.pending_chunks():
            time.sleep(delay)
            writer.write_chunk(i, embeddings[writer.rows(i)])
            _say(f"chunk {i}")
        writer.finish()
    _say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
