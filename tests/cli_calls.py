"""The two ways a test runs ``tmescope ARGS``: in a fresh process, as a user does
(:func:`run_cli`: for what only a real process shows, such as exit codes of the executable,
signals, concurrent writers, start-up), or through the console-script entry point
``tmescope.cli.main:main`` in the test's own process (:func:`call_cli`: the same parsing, output
and exit code, without a torch start-up for each bad-input case)."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path) -> Result:
    """``tmescope ARGS`` in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "tmescope", *map(str, args)], capture_output=True, text=True
    )
    return Result(done.returncode, done.stdout, done.stderr)


def call_cli(*args: str | Path) -> Result:
    """``tmescope ARGS`` through the console-script entry point, in this process."""
    from tmescope.cli.main import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the CLI reconfigures logging
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with (
            warnings.catch_warnings(),
            mock.patch.object(sys, "argv", ["tmescope", *map(str, args)]),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return Result(code, out.getvalue(), err.getvalue())
