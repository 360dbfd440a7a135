"""Outputs put in place whole: the old version or the new one, and killed writers swept up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tmescope.store import atomic
from tmescope.store.atomic import (
    is_work_path,
    remove_atomically,
    sweep_leftovers,
    work_path,
    write_atomically,
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _as_if_by(path: Path, pid: int) -> Path:
    return path.with_name(path.name.replace(f"-{os.getpid()}-", f"-{pid}-"))


def _folder(path: Path, text: str) -> None:
    path.mkdir()
    (path / "a.txt").write_text(text)
    (path / "sub").mkdir()
    (path / "sub" / "b.txt").write_text(text * 2)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_folder_is_replaced_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    target = tmp_path / "model"
    write_atomically(target, lambda p: _folder(p, "old"))
    assert write_atomically(target, lambda p: (_folder(p, "new"), 7)[1]) == 7
    assert (target / "a.txt").read_text() == "new" and (
        target / "sub" / "b.txt"
    ).read_text() == "newnew"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # nothing left beside it


def test_a_failed_write_changes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_atomically(target, lambda p: p.write_text("old"))

    def fail(partial: Path) -> None:
        partial.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_leftovers_of_dead_writers_go_and_those_of_live_ones_stay(tmp_path: Path) -> None:
    target = tmp_path / "set"
    dead = _as_if_by(work_path(target), _dead_pid())
    live = work_path(target)  # ours: a writer at work
    other_host = tmp_path / f".set.partial-elsewhere-{_dead_pid()}-abcd1234"
    for path in (dead, live, other_host):
        path.mkdir()
    assert all(is_work_path(p.name) for p in (dead, live, other_host))
    assert sweep_leftovers(target) == [dead]
    assert live.exists() and other_host.exists()  # another host's pid says nothing here


def test_an_old_version_moved_aside_by_a_killed_writer_is_put_back(tmp_path: Path) -> None:
    target = tmp_path / "model"
    aside = _as_if_by(work_path(target, atomic.ASIDE), _dead_pid())
    _folder(aside, "old")  # killed between its two renames: no model at the target
    sweep_leftovers(target)
    assert (target / "a.txt").read_text() == "old" and not aside.exists()


def test_removal_is_at_once_for_readers(tmp_path: Path) -> None:
    target = tmp_path / "S1"
    _folder(target, "x")
    remove_atomically(target)
    assert list(tmp_path.iterdir()) == []


def test_a_writer_killed_at_any_moment_leaves_the_old_version_or_the_new(tmp_path: Path) -> None:
    """A child rewrites a folder of 200 files over and over; SIGKILL lands mid-way."""
    target = tmp_path / "out"
    write_atomically(target, lambda p: _folder(p, "v0"))
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from tmescope.store.atomic import write_atomically

        def write(path, version):
            path.mkdir()
            for i in range(200):
                (path / f"{{i}}.txt").write_text(version)

        for n in range(1, 100000):
            write_atomically(Path({str(target)!r}), lambda p: write(p, f"v{{n}}"))
            if n == 1:
                print("going", flush=True)
        """
    )
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "going\n"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        sweep_leftovers(target)
        files = [p for p in target.iterdir() if p.is_file()]
        versions = {p.read_text() for p in files}
        assert len(versions) == 1, versions  # one version, never a mix
        assert versions == {"v0"} or len(files) == 200  # and whole
        assert [p.name for p in tmp_path.iterdir()] == ["out"]
