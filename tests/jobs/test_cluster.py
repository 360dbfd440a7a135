"""Per-sample tasks: the same results in the same order serially and on Dask workers, refused
schedulers, and task payloads that a cluster can ship to its worker processes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from tmescope.errors import InvalidParameterError
from tmescope.jobs.cluster import SampleRunner, check_scheduler, sample_runner


def _square(item: int, offset: int) -> int:
    return item * item + offset


def _fail_on_two(item: int) -> int:
    if item == 2:
        raise InvalidParameterError("sample 2 is refused")
    return item


def test_tasks_finish_in_any_order_and_come_back_in_the_samples_order() -> None:
    from distributed import LocalCluster

    seen: list[int] = []
    serial = SampleRunner().map(_square, [3, 1, 2], 10, on_done=lambda i, r: seen.append(i))
    assert serial == [19, 11, 14] and seen == [0, 1, 2]
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                     dashboard_address=None) as cluster,
        sample_runner(cluster.scheduler_address) as runner,
    ):  # fmt: skip
        done: list[int] = []
        assert runner.distributed
        assert runner.map(_square, [3, 1, 2], 10, on_done=lambda i, r: done.append(i)) == serial
        assert sorted(done) == [0, 1, 2]
        with pytest.raises(InvalidParameterError, match="sample 2 is refused"):
            runner.map(_fail_on_two, [1, 2, 3])


@pytest.mark.parametrize("scheduler", ["local:0", "local", "cluster", "http//x:1"])
def test_a_scheduler_that_is_neither_local_n_nor_an_address_is_refused(scheduler: str) -> None:
    with pytest.raises(InvalidParameterError, match="--scheduler"):
        check_scheduler(scheduler)
    check_scheduler("local:2")
    check_scheduler("tcp://10.0.0.5:8786")


def test_every_task_and_its_payload_pickle(tmp_path: Path) -> None:
    """A process cluster ships each task's function and arguments to a worker: plain data."""
    from tmescope.jobs.export_parts import ExportItem, ExportTask
    from tmescope.jobs.export_spatialdata import write_part
    from tmescope.jobs.fused import FusedTask, write_fused_sample_task
    from tmescope.jobs.interaction_sample import (
        SampleSites,
        StatisticsTask,
        draw_sample_figures,
        sample_statistics,
    )
    from tmescope.jobs.interactions import InteractionSettings
    from tmescope.jobs.interface_sample import InterfaceTask, sample_interfaces
    from tmescope.jobs.interfaces import InterfaceSettings
    from tmescope.jobs.niches import NicheMap, NicheMapTask, draw_niche_map
    from tmescope.jobs.predict_cohort import PredictTask, predict_one

    sites = SampleSites("S1", np.zeros((3, 2)), np.zeros((3, 2), np.float32),
                        np.array(["a", "b", "a"], dtype=object), np.zeros((3, 2), np.float32))  # fmt: skip
    payloads = [
        (sample_interfaces, InterfaceTask(tmp_path, tmp_path, InterfaceSettings(), None, True)),
        (
            predict_one,
            PredictTask(tmp_path, tmp_path, "m", tmp_path, False, 16.0, "cpu", *[True] * 2),
        ),
        (write_fused_sample_task, FusedTask(tmp_path, tmp_path, "cpu")),
        (sample_statistics, sites, StatisticsTask(InteractionSettings(), ("a", "b"), ("x",))),
        (draw_sample_figures,),
        (draw_niche_map, NicheMap("S1", np.zeros((2, 2)), np.array(["N0"], dtype=object))),
        (NicheMapTask(tmp_path, ("N0", "N1"), "kmeans", tmp_path),),
        (write_part, ExportItem("S1", {0: "N0"}), ExportTask(tmp_path, None, None, (), tmp_path)),
    ]
    for payload in payloads:
        assert pickle.loads(pickle.dumps(payload)) is not None
