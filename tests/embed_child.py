"""A child process that embeds samples with the Python twin of ``tmescope embed``.

    python embed_child.py STORE CHUNK_ROWS SAMPLE_DIR [SAMPLE_DIR ...] [--hold-after CHUNKS]

Each sample is read with its full-resolution slide (``<sample>/<sample_id>_he.tif``) and
embedded with ``test-vit-tiny`` on the CPU, ``chunk_rows`` rows per store chunk. Prints the
summaries as one JSON line when done. With ``--hold-after CHUNKS`` it prints ``holding`` once
that many chunks are in the store (and the next one is being computed) and waits there, so
that a test kills it part-way at a known point, however slow the machine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tmescope.workflows import EmbedSettings, SampleInput, embed_samples, fullres_image_of

HOLD_S = 300  # a parent that never kills us has failed; don't outlive it for long


class _HoldAfter:
    """A progress reporter that stops the run once ``chunks`` whole chunks are written.

    A chunk is handed to the store when the first batch of the next chunk starts, so once rows
    past ``chunks × chunk_rows`` have been embedded, chunks ``0 … chunks - 1`` are written.
    """

    def __init__(self, chunks: int, chunk_rows: int) -> None:
        self.limit, self.rows = chunks * chunk_rows, 0

    def start(self, sample_id: str, total: int) -> None:
        self.rows = 0

    def advance(self, n: int) -> None:
        self.rows += n
        if self.rows > self.limit:
            sys.stdout.write("holding\n")
            sys.stdout.flush()
            time.sleep(HOLD_S)
            raise SystemExit("held for too long: the parent never killed this process")


def main(store: str, chunk_rows: int, sample_dirs: list[Path], hold_after: int | None) -> int:
    summaries = embed_samples(
        [SampleInput(d, image=fullres_image_of(d)) for d in sample_dirs],
        store=store,
        encoder="test-vit-tiny",
        device="cpu",
        settings=EmbedSettings(chunk_rows=chunk_rows),
        progress=_HoldAfter(hold_after, chunk_rows) if hold_after is not None else None,
    )
    sys.stdout.write(json.dumps([s.to_dict() for s in summaries]) + "\n")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    hold = None
    if "--hold-after" in args:
        at = args.index("--hold-after")
        hold = int(args[at + 1])
        del args[at : at + 2]
    sys.exit(main(args[0], int(args[1]), [Path(p) for p in args[2:]], hold))
