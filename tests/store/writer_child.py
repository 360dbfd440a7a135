"""A second process that writes one sample into a cohort store: the store tests' other writer.

    python writer_child.py STORE SAMPLE_ID DATA.npz DELAY_S [HOLD_AT GATE]

Prints ``begun``, then ``chunk <i>`` after each chunk (sleeping ``DELAY_S`` before it) and
``done``, one flushed line each, so that the test can act at a known moment. With ``HOLD_AT``
and ``GATE``, it prints ``holding`` before writing chunk ``HOLD_AT`` and waits until the file
``GATE`` exists: the test acts while the writer is certainly mid-way, however slow the machine.
Exits 3, printing ``locked``, when another live process holds the sample.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from tmescope.errors import StoreLockedError
from tmescope.store import CohortStore, SampleMeta, SampleRows


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()  # the parent waits on each line


GATE_WAIT_S = 300  # a parent that never opens the gate has failed; don't outlive it for long


def main(
    store_path: str,
    sample_id: str,
    data_path: str,
    delay: float,
    hold_at: int | None = None,
    gate: str | None = None,
) -> int:
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
            if i == hold_at and gate is not None:
                _say("holding")
                _wait_for(Path(gate))
            time.sleep(delay)
            writer.write_chunk(i, embeddings[writer.rows(i)])
            _say(f"chunk {i}")
        writer.finish()
    _say("done")
    return 0


def _wait_for(gate: Path) -> None:
    deadline = time.monotonic() + GATE_WAIT_S
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} was not opened within {GATE_WAIT_S} s")
        time.sleep(0.01)


if __name__ == "__main__":
    args = sys.argv[1:]
    hold = (int(args[4]), args[5]) if len(args) > 4 else (None, None)
    sys.exit(main(args[0], args[1], args[2], float(args[3]), *hold))
