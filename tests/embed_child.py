"""A child process that embeds samples with the Python twin of ``tmescope embed``.

    python embed_child.py STORE CHUNK_ROWS SAMPLE_DIR [SAMPLE_DIR ...]

Each sample is read with its full-resolution slide (``<sample>/<sample_id>_he.tif``) and
embedded with ``test-vit-tiny`` on the CPU, ``chunk_rows`` rows per store chunk. Prints the
summaries as one JSON line when done. The tests kill it part-way to check that a run resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tmescope.jobs.embed import EmbedSettings, SampleInput
from tmescope.workflows import embed_samples, fullres_image_of


def main(store: str, chunk_rows: int, sample_dirs: list[Path]) -> int:
    summaries = embed_samples(
        [SampleInput(d, image=fullres_image_of(d)) for d in sample_dirs],
        store=store,
        encoder="test-vit-tiny",
        device="cpu",
        settings=EmbedSettings(chunk_rows=chunk_rows),
    )
    sys.stdout.write(json.dumps([s.to_dict() for s in summaries]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), [Path(p) for p in sys.argv[3:]]))
