"""Where the report's pages lie: the index at ``--out``, one page per sample in a folder beside it.

``report.html`` → ``report_files/<sample>.html``: the pair a browser's "save page, complete"
makes, so that a reader knows to keep them together (zip the two to mail them). Links between
pages are relative, so the pair opens wherever it is moved or unzipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PAGES_SUFFIX = "_files"
PAGE_SUFFIX = ".html"


def pages_folder(index: Path) -> Path:
    """The folder of the samples' pages that goes with the index ``index``."""
    return index.with_name(f"{index.stem}{PAGES_SUFFIX}")


@dataclass(frozen=True)
class ReportLayout:
    """The names of a report's files and the relative links between them."""

    index_name: str  # "report.html"
    pages_name: str  # "report_files"
    order: tuple[str, ...]  # the samples, in the order of the index
    files: dict[str, str]  # sample id → its page's file name in the pages folder
    position: dict[str, int]  # sample id → its place in ``order``

    @classmethod
    def of(cls, index: Path, sample_ids: Sequence[str]) -> ReportLayout:
        """A page per sample, ``<sample>.html``; ids that differ only in case (one file on
        macOS and Windows, where a zipped report may be opened) get ``-2``, ``-3``, …"""
        files: dict[str, str] = {}
        taken: set[str] = set()
        for sample_id in sample_ids:
            name, n = f"{sample_id}{PAGE_SUFFIX}", 1
            while name.lower() in taken:
                n += 1
                name = f"{sample_id}-{n}{PAGE_SUFFIX}"
            taken.add(name.lower())
            files[sample_id] = name
        order = tuple(files)
        position = {s: i for i, s in enumerate(order)}
        return cls(index.name, pages_folder(index).name, order, files, position)

    def page_href(self, sample_id: str) -> str:
        """From the index to a sample's page."""
        return f"{quote(self.pages_name)}/{quote(self.files[sample_id])}"

    def sibling_href(self, sample_id: str) -> str:
        """From a sample's page to another's."""
        return quote(self.files[sample_id])

    @property
    def index_href(self) -> str:
        """From a sample's page back to the index."""
        return f"../{quote(self.index_name)}"

    def links_of(self, sample_id: str) -> list[tuple[str, str]]:
        """A sample page's links: the index, the previous and the next sample (if any)."""
        i = self.position[sample_id]
        links = [("↑ index of the report", self.index_href)]
        if i > 0:
            links.append((f"← {self.order[i - 1]}", self.sibling_href(self.order[i - 1])))
        if i + 1 < len(self.order):
            links.append((f"{self.order[i + 1]} →", self.sibling_href(self.order[i + 1])))
        return links
