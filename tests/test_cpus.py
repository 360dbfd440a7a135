"""Usable cores (affinity, cgroup quotas, SLURM), the thread budget and its overrides, on fake
``/proc/self`` and ``/sys/fs/cgroup`` trees: nothing here reads the machine's own."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tmescope import cpus
from tmescope.errors import InvalidParameterError, TmescopeError

AFFINITY = len(os.sched_getaffinity(0))
ENVS = (cpus.THREADS_ENV, cpus.WAIT_POLICY_ENV, cpus.SPIN_COUNT_ENV, "SLURM_CPUS_PER_TASK",
        *cpus.POOL_ENVS)  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the variables it reads and without a configured budget; both
    are put back afterwards (the suite's other tests share this process)."""
    for name in ENVS:
        monkeypatch.setenv(name, "sentinel")  # recorded, so teardown restores the original
        monkeypatch.delenv(name)
    monkeypatch.setattr(cpus, "_configured", None)


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's root command configures logging for the process: put it back."""
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))
    monkeypatch.setattr(logging.root, "level", logging.root.level)


class FakeTorch:
    """The three calls of torch this module makes, without importing torch (seconds)."""

    def __init__(self, threads: int) -> None:
        self.threads, self.interop = threads, 0

    def get_num_threads(self) -> int:
        return self.threads

    def set_num_threads(self, n: int) -> None:
        self.threads = n

    def set_num_interop_threads(self, n: int) -> None:
        if self.interop:
            raise RuntimeError("cannot set number of interop threads after parallel work")
        self.interop = n


@pytest.fixture
def torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTorch]:
    """A fake torch at its default (one thread per core); the loaded BLAS limits put back."""
    from threadpoolctl import threadpool_info, threadpool_limits

    fake = FakeTorch(AFFINITY)
    monkeypatch.setitem(sys.modules, "torch", fake)
    limits = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    yield fake
    threadpool_limits(limits)


def fake_proc(tmp_path: Path, cgroup: str) -> Path:
    proc = tmp_path / "proc_self"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    return proc


def write(path: Path, text: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for line in text.strip().splitlines():
        name, _, value = line.partition("=")
        (path / name).write_text(value + "\n")


def test_cgroup_v2_quota_of_the_process_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root, "cpu.max=max 100000")
    write(root / "kubepods", "cpu.max=300000 100000")
    write(root / "kubepods" / "pod1", "cpu.max=max 100000")
    proc = fake_proc(tmp_path, "0::/kubepods/pod1\n")
    assert cpus.cgroup_cpu_quota(proc_self=proc, cgroup_root=root) == 3.0  # the parent's limit
    assert cpus.usable_cpus(environ={}, proc_self=proc, cgroup_root=root) == min(AFFINITY, 3)


def test_cgroup_v2_fraction_rounds_down_but_never_below_one(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = fake_proc(tmp_path, "0::/\n")
    write(root, "cpu.max=50000 100000")
    assert cpus.cgroup_cpu_quota(proc_self=proc, cgroup_root=root) == 0.5
    assert cpus.usable_cpus(environ={}, proc_self=proc, cgroup_root=root) == 1
    write(root, "cpu.max=150000 100000")
    assert cpus.usable_cpus(environ={}, proc_self=proc, cgroup_root=root) == 1


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct", "cpu.cfs_quota_us=-1\ncpu.cfs_period_us=100000")
    write(
        root / "cpu,cpuacct" / "docker" / "abc", "cpu.cfs_quota_us=100000\ncpu.cfs_period_us=100000"
    )
    proc = fake_proc(tmp_path, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert cpus.cgroup_cpu_quota(proc_self=proc, cgroup_root=root) == 1.0
    assert cpus.usable_cpus(environ={}, proc_self=proc, cgroup_root=root) == 1


def test_cgroup_path_missing_under_the_mount_falls_back_to_its_root(tmp_path: Path) -> None:
    """A container without its own cgroup namespace sees its host path, mounted as the root."""
    root = tmp_path / "cgroup"
    write(root / "cpu", "cpu.cfs_quota_us=200000\ncpu.cfs_period_us=100000")
    proc = fake_proc(tmp_path, "3:cpu:/docker/0123\n")
    assert cpus.cgroup_cpu_quota(proc_self=proc, cgroup_root=root) == 2.0


@pytest.mark.parametrize(
    "files",
    ["", "cpu.max=max 100000", "cpu.max=garbage", "cpu.max=-5 0"],
    ids=["no-files", "unlimited", "unreadable", "nonsense"],
)
def test_no_quota(tmp_path: Path, files: str) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    if files:
        write(root, files)
    proc = fake_proc(tmp_path, "0::/\n")
    assert cpus.cgroup_cpu_quota(proc_self=proc, cgroup_root=root) is None
    assert cpus.usable_cpus(environ={}, proc_self=proc, cgroup_root=root) == AFFINITY
    assert cpus.cgroup_cpu_quota(proc_self=tmp_path / "nowhere", cgroup_root=root) is None


@pytest.mark.parametrize(("slurm", "expected"), [("1", 1), ("999", AFFINITY), ("x", AFFINITY)])
def test_slurm_cpus_per_task(tmp_path: Path, slurm: str, expected: int) -> None:
    usable = cpus.usable_cpus(
        environ={"SLURM_CPUS_PER_TASK": slurm}, proc_self=tmp_path, cgroup_root=tmp_path
    )
    assert usable == expected


def test_affinity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert cpus.usable_cpus(environ={}, proc_self=tmp_path, cgroup_root=tmp_path) == 1


def test_budget_precedence() -> None:
    usable = cpus.usable_cpus(environ={})
    assert cpus.thread_budget(environ={}) == usable
    assert cpus.thread_budget(environ={"OMP_NUM_THREADS": "3,1"}) == 3
    env = {"OMP_NUM_THREADS": "3", cpus.THREADS_ENV: "5"}
    assert cpus.thread_budget(environ=env) == 5  # ours before OpenMP's
    assert cpus.thread_budget(7, environ=env) == 7  # the option before both
    assert cpus.thread_budget(environ={cpus.THREADS_ENV: " "}) == usable  # blank: unset
    assert cpus.thread_budget(environ={"OMP_NUM_THREADS": "lots"}) == usable  # not ours to judge


@pytest.mark.parametrize("bad", ["abc", "0", "-2", "1.5"])
def test_bad_override_is_one_clear_error(bad: str) -> None:
    with pytest.raises(
        InvalidParameterError, match=f"{cpus.THREADS_ENV} must be a positive"
    ) as err:
        cpus.thread_budget(environ={cpus.THREADS_ENV: bad})
    assert isinstance(err.value, TmescopeError) and "\n" not in str(err.value)
    with pytest.raises(InvalidParameterError, match="--threads must be a positive"):
        cpus.thread_budget(0)


def test_configure_sizes_torch_blas_and_children_but_keeps_the_users_settings(
    monkeypatch: pytest.MonkeyPatch, torch: FakeTorch
) -> None:
    import numpy  # noqa: F401  (its BLAS loaded, to be limited)
    from threadpoolctl import threadpool_info

    monkeypatch.setenv("MKL_NUM_THREADS", "4")
    monkeypatch.setenv(cpus.WAIT_POLICY_ENV, "ACTIVE")
    assert cpus.configure_threads(1) == 1
    assert (torch.threads, torch.interop) == (1, 1)
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["MKL_NUM_THREADS"] == "4"  # the user's, for what reads it
    assert os.environ[cpus.WAIT_POLICY_ENV] == "ACTIVE"
    assert cpus.SPIN_COUNT_ENV not in os.environ  # it would override the user's policy
    assert cpus.reader_threads() == 1
    assert cpus.ensure_threads() == 1  # configured already: applied, not re-decided


@pytest.mark.usefixtures("torch")
def test_openmp_threads_spin_briefly_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus.configure_threads(1)
    assert os.environ[cpus.SPIN_COUNT_ENV] == str(cpus.SPIN_COUNT)
    assert cpus.WAIT_POLICY_ENV not in os.environ
    assert cpus.worker_environ(3) == {
        **dict.fromkeys((cpus.THREADS_ENV, *cpus.POOL_ENVS), "3"),
        cpus.SPIN_COUNT_ENV: str(cpus.SPIN_COUNT),
    }
    monkeypatch.setenv(cpus.SPIN_COUNT_ENV, "0")
    monkeypatch.setenv(cpus.WAIT_POLICY_ENV, "PASSIVE")
    cpus.configure_threads(1)
    assert os.environ[cpus.SPIN_COUNT_ENV] == "0"  # the user's, kept
    assert cpus.worker_environ(1)[cpus.WAIT_POLICY_ENV] == "PASSIVE"  # and passed on


def test_ensure_keeps_torch_threads_the_user_set(torch: FakeTorch) -> None:
    torch.set_num_threads(AFFINITY + 1)  # not torch's default: the user's choice
    assert cpus.ensure_threads() == AFFINITY + 1
    assert torch.get_num_threads() == AFFINITY + 1


def test_ensure_sizes_torch_when_the_user_did_not(
    monkeypatch: pytest.MonkeyPatch, torch: FakeTorch
) -> None:
    monkeypatch.setenv(cpus.THREADS_ENV, "1")
    assert cpus.ensure_threads() == 1
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(("budget", "readers"), [(1, 1), (2, 2), (16, cpus.MAX_READERS)])
def test_reader_threads(budget: int, readers: int) -> None:
    assert cpus.reader_threads(budget) == readers


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--threads", "0"], {}, "--threads must be a positive whole number"),
        ([], {cpus.THREADS_ENV: "abc"}, "TMESCOPE_THREADS must be a positive whole number"),
    ],
    ids=["option", "environment"],
)
def test_cli_refuses_a_bad_thread_count_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    fragment: str,
) -> None:
    from tmescope.cli.main import EXIT_BAD_INPUT, main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["tmescope", *argv, "encoders"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == EXIT_BAD_INPUT
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and fragment in errors[0]


@pytest.mark.usefixtures("torch")
def test_cli_threads_option_sizes_the_pools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tmescope.cli.main import EXIT_BAD_INPUT, main

    monkeypatch.setenv(cpus.THREADS_ENV, "2")  # the option wins over the environment
    monkeypatch.setattr(sys, "argv", ["tmescope", "--threads", "1", "info", str(tmp_path / "no")])
    with pytest.raises(SystemExit) as done:  # the command fails after the pools are sized
        main()
    assert done.value.code == EXIT_BAD_INPUT
    assert cpus.configured_threads() == 1
    assert "does not exist" in capsys.readouterr().err  # the command's error, not the option's
