"""A report's index and its folder of pages, put in place together: whole or not at all.

Both are prepared in a hidden work folder beside the index (named as ``store.atomic`` names
work in progress, so that a killed run's leftovers are swept by the next run), then put in place
by two renames: the pages' folder first (swapped with the old one in one step), then the index.
Between the two renames the old index may still be read, so the old pages that the new set
lacks are linked into the new folder until the new index is in place: at no moment does an
index link to a page that is not there. Once done, the folder holds the new pages only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from tmescope.errors import InvalidParameterError
from tmescope.store.atomic import replace_path, sweep_leftovers, work_path
from tmescope.viz.report.folder import PAGE_SUFFIX, pages_folder


def check_pages_folder(index: Path) -> None:
    """An error unless the pages' folder of ``index`` is absent or a report's (pages only):
    a re-run replaces it whole, and nothing else may be lost with it."""
    pages = pages_folder(index)
    if not pages.exists():
        return
    if not pages.is_dir():
        raise InvalidParameterError(
            f"the report's pages go in {pages}, but that is a file; move it or name another --out"
        )
    foreign = sorted(p.name for p in pages.iterdir() if not p.name.endswith(PAGE_SUFFIX))
    if foreign:
        listed = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise InvalidParameterError(
            f"the report's pages go in {pages}, which a new report replaces whole, but it holds "
            f"files that are not a report's pages ({listed}); move them or name another --out"
        )


def write_report_files(index: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(work)``, which makes ``work/<index name>`` and ``work/<pages folder name>/``,
    then put both in place at ``index`` and beside it. When ``write`` raises, nothing changes."""
    index = Path(index)
    pages = pages_folder(index)
    index.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(index)
    sweep_leftovers(pages)
    check_pages_folder(index)
    work = work_path(index)
    work.mkdir()
    try:
        write(work)
        new_index, new_pages = work / index.name, work / pages.name
        if not (new_index.is_file() and new_pages.is_dir()):
            raise RuntimeError(f"the report's writer left no {index.name} and {pages.name}/")
        kept = _keep_old_pages(pages, new_pages)
        replace_path(new_pages, pages)  # the old folder is now in work, removed below
        replace_path(new_index, index)
        for name in kept:  # no index links to them any more
            (pages / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _keep_old_pages(old: Path, new: Path) -> list[str]:
    """Link the pages of ``old`` that ``new`` lacks into ``new``; their names."""
    if not old.is_dir():
        return []
    kept = []
    for page in old.iterdir():
        if not page.is_file() or (new / page.name).exists():
            continue
        try:
            os.link(page, new / page.name)
        except OSError:  # a file system without hard links
            shutil.copy2(page, new / page.name)
        kept.append(page.name)
    return kept
