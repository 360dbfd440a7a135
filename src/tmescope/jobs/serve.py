"""The local web viewer (twin of ``tmescope serve``): build the app over a store and serve it.

The viewer binds to the loopback interface by default: it reads slides and expression that may
be confidential and has no authentication, so it is meant for the person at the machine (or an
SSH tunnel). There it answers only requests that name a loopback host, so that a web page cannot
reach it through a name of its own (DNS rebinding). Another host is served only when asked,
with a warning.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tmescope.errors import InvalidParameterError, TmescopeWarning
from tmescope.viz.app.assets import MISSING_MESSAGE, openseadragon_dir

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tmescope.fusion.model_dir import FusionModel
    from tmescope.fusion.prediction import SamplePrediction
    from tmescope.store import CohortStore
    from tmescope.viz.app.sample_data import MeasuredTable

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8765


def make_app(
    store: Path | str, model_dir: Path | str | None = None, *, device: str = "cpu"
) -> FastAPI:
    """The viewer's app over ``store`` (and the model in ``model_dir``, checked to fit it).

    Opens the store and loads the model now, so that a wrong path or a model of another
    encoder fails before anything is served; slides, counts and predictions are read lazily.
    Warns when the page's JavaScript libraries are missing (the API still works).
    """
    from tmescope.store import CohortStore
    from tmescope.viz.app.api import create_app
    from tmescope.viz.app.sample_data import CohortData
    from tmescope.viz.app.slide_tiles import SlideTiles

    opened = CohortStore.open(store, mode="r")

    def measured(sample_id: str) -> MeasuredTable:
        return measured_expression(opened, sample_id)

    if model_dir is None:
        data, analysis, subspot, compare = CohortData(opened, measured=measured), None, None, None
    else:
        from tmescope.fusion.model_dir import load_model
        from tmescope.jobs.predict import check_model_fits_store
        from tmescope.jobs.serve_analysis import ViewerAnalysis, ViewerComparison, ViewerSubspot

        model = load_model(model_dir, device=device)
        check_model_fits_store(model, opened.fingerprint, where=f"the store {opened.path}")
        data = CohortData(opened, measured=measured, model=ModelPredictions(opened, model))
        analysis, subspot = ViewerAnalysis(opened, model), ViewerSubspot(opened, model)
        compare = ViewerComparison(opened, model)
    assets = openseadragon_dir()
    if assets is None:
        warnings.warn(MISSING_MESSAGE, TmescopeWarning, stacklevel=2)
    return create_app(
        data, SlideTiles(opened), assets=assets, analysis=analysis, subspot=subspot,
        compare=compare,
    )  # fmt: skip


class ModelPredictions:
    """A loaded model over a store, as the viewer asks for it (its ``ModelSource``)."""

    def __init__(self, store: CohortStore, model: FusionModel) -> None:
        self._store = store
        self._model = model

    @property
    def model_id(self) -> str:
        return self._model.model_id

    @property
    def genes(self) -> tuple[str, ...]:
        return tuple(self._model.spec.genes)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self._model.spec.state_names)

    def predict(self, sample_id: str) -> SamplePrediction:
        """Spots, and the grid of tiles where the sample has one."""
        from tmescope.jobs.predict import predict_rows

        grid = self._store.sample_record(sample_id).n_tiles > 0
        return predict_rows(self._store, self._model, sample_id, grid=grid)

    def measured(self, sample_id: str) -> MeasuredTable:
        """The model's targets (genes, then states) at the sample's spots, computed as in training."""
        from tmescope.fusion.cohort import read_spot_table
        from tmescope.viz.app.sample_data import MeasuredTable

        spec = self._model.spec
        table = read_spot_table(self._store, sample_id)
        return MeasuredTable((*spec.genes, *spec.state_names), spec.compute(table), table.rows)


def measured_expression(store: CohortStore, sample_id: str) -> MeasuredTable:
    """Every gene of a sample's spots as log1p of counts scaled to 10,000 a spot, genes by total
    count (the measured layer of a viewer without a model)."""
    import numpy as np
    import scipy.sparse as sp

    from tmescope.errors import SampleNotFoundError
    from tmescope.fusion.targets import normalise_log1p
    from tmescope.store.schema import RowKind
    from tmescope.viz.app.sample_data import MeasuredTable

    counts = store.read_counts(sample_id)
    if counts is None:  # removed since the record was read
        raise SampleNotFoundError(f"sample {sample_id!r} no longer has counts")
    matrix = sp.csr_matrix(counts.X, dtype=np.float32)
    by_total = np.argsort(-np.asarray(matrix.sum(axis=0)).ravel(), kind="stable")
    logged = sp.csc_matrix(normalise_log1p(matrix)[:, by_total])
    # The count matrix's rows are the spot rows, in store order (checked by verify).
    spot_rows = np.flatnonzero(store.read_kind(sample_id) == RowKind.SPOT)
    names = tuple(str(g) for g in np.asarray(counts.var_names)[by_total])
    return MeasuredTable(names, logged, spot_rows)


def serve(
    store: Path | str,
    model_dir: Path | str | None = None,
    *,
    host: str = LOOPBACK,
    port: int = DEFAULT_PORT,
    device: str = "cpu",
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the viewer of ``store`` at ``http://host:port/`` until interrupted.

    The port is bound before the app is built and handed to uvicorn, so a port in use is an
    :class:`InvalidParameterError` at once rather than a log line after start-up. ``on_ready``
    is called with the page's URL once the socket listens.
    """
    import uvicorn

    if not 0 < port < 65536:
        raise InvalidParameterError(f"--port must be 1 to 65535, got {port}")
    if not _is_loopback(host):
        warnings.warn(
            f"serving on {host}: anyone who can reach this machine on port {port} can read the "
            "slides and expression of the store (the viewer has no authentication); use the "
            f"default --host {LOOPBACK} and an SSH tunnel unless this network is trusted",
            TmescopeWarning,
            stacklevel=2,
        )
    sock = _bind(host, port)
    try:
        app = make_app(store, model_dir, device=device)
        if _is_loopback(host):
            from tmescope.viz.app.hosts import LOOPBACK_NAMES, HostCheck

            bound = f"[{host}]" if ":" in host else host  # as a Host header names it
            app.add_middleware(HostCheck, allowed=(*LOOPBACK_NAMES, bound))
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        if on_ready is not None:
            shown = f"[{host}]" if ":" in host else host
            on_ready(f"http://{shown}:{sock.getsockname()[1]}/")
        server.run(sockets=[sock])
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise InvalidParameterError(
                f"port {port} on {host} is in use (another viewer?); pick another with --port"
            ) from error
        raise InvalidParameterError(f"cannot listen on {host}:{port} ({error})") from error
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
