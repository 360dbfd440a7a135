"""The viewer under abuse: hostile requests against a real ``tmescope serve`` on loopback.

Every route of the app (enumerated from ``app.routes``, so a new route is covered without
editing this file) gets each hostile value in each of its parameters, the others valid; then
wrong methods, oversized bodies, malformed HTTP, path traversal under every mount, bursts of
concurrent requests and clients that stall half-way. Each answer must come within
:data:`BOUND_S`, be 2xx, 3xx or 4xx (a garbled request may instead be dropped), and never hold
the canary planted beside the store nor ``/etc/passwd``; the server must stay up, and its
memory bounded. The loops are bounded in count and time: in ``make test`` a sample of the
catalogue against the viewer without a model; under ``TMESCOPE_RELIABILITY=full`` the whole
catalogue twice, larger bursts, and a second viewer with a model (every route live).
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import reliability_tally
from viewer_abuse import (
    BOUND_S,
    Probe,
    Viewer,
    exchange,
    get,
    send,
)

pytestmark = pytest.mark.slow

METHODS = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "BREW")
# Host headers of other sites (DNS rebinding): refused, whatever the route.
FOREIGN_HOSTS = (
    "evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil.example",
    "127.0.0.1@evil.example", "[::1", "[::2]", "0.0.0.0", "127.1", "2130706433", "",
)  # fmt: skip
LOOPBACK_HOSTS = ("localhost", "LOCALHOST.", "127.0.0.1", "[::1]")  # all answered, any port

# Light: the viewer without a model (a store in seconds; the model's routes answer 409 after
# their parameters are checked). Full: with a quick model too, so that every route is live.
SERVERS = ("bare", "model") if reliability_tally.full() else ("bare",)


@pytest.fixture(scope="module")
def abuse_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic samples (one in make test, two in the full run) with grid tiles, and the
    index of their embeddings."""
    from tmescope.datasets import write_synthetic_cohort
    from tmescope.jobs.embed import EmbedSettings, SampleInput
    from tmescope.workflows import build_cohort_index, embed_samples

    root = tmp_path_factory.mktemp("abuse")
    n_samples, n_spots = reliability_tally.trials(1, 2), reliability_tally.trials(40, 60)
    dirs = write_synthetic_cohort(root / "cohort", n_samples=n_samples, n_spots=n_spots, seed=5)
    store = root / "cohort.zarr"
    embed_samples(
        [SampleInput(d, image=next(d.glob("*_he.tif"))) for d in dirs], store=store,
        encoder="test-vit-tiny", device="cpu", settings=EmbedSettings(grid_um=110.0),
    )  # fmt: skip
    build_cohort_index(store)
    return store


@pytest.fixture(scope="module")
def abuse_model(abuse_store: Path) -> Path:
    """A quick model of the store with a sub-spot model, and its fused index."""
    from tmescope.jobs.train import TrainSettings, train_model
    from tmescope.workflows import build_cohort_index

    root = abuse_store.parent
    folds = root / "folds.csv"  # one fold: a model in seconds
    folds.write_text("sample_id,fold\nsynth_00,0\n")
    settings = TrainSettings(
        models=("ridge",), n_genes=8, n_members=1, folds=str(folds), device="cpu",
        reference=root / "cohort" / "reference.h5ad", resolution_um=16.0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few genes in a tiny cohort: expected, not our subject
        train_model(abuse_store, root / "model", settings=settings)
    build_cohort_index(abuse_store, space="fused", model_dir=root / "model")
    return root / "model"


@pytest.fixture(scope="module", params=SERVERS)
def viewer(request: pytest.FixtureRequest, abuse_store: Path) -> Iterator[Viewer]:
    """``tmescope serve STORE [--model MODEL]`` on 127.0.0.1, its working folder the one that
    holds the store and a canary file."""
    model = request.getfixturevalue("abuse_model") if request.param == "model" else None
    root = abuse_store.parent
    secret = f"canary-{uuid.uuid4().hex}"
    canary = root / "canary.txt"
    canary.write_text(secret + "\n")
    process, port = _start_server(abuse_store, model, root)
    try:
        served = Viewer(process=process, port=port, secret=secret, canary=canary)
        served.warm_up(_app_routes(abuse_store))
        yield served
        reliability_tally.count(
            "viewer", f"server ({request.param})", runs=1,
            max_latency_ms=round(served.worst_s * 1000),
            rss_growth_mb=round(served.rss_growth_mb()), peak_rss_mb=round(served.peak_rss_mb),
        )  # fmt: skip
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_route_survives_every_hostile_parameter(viewer: Viewer) -> None:
    """Each parameter of each route, and each route under each mount, gets every hostile value
    (traversal, malformed, oversized, injection, unknown ids), the others valid."""
    probes = [*viewer.parameter_probes(_hostile_values(viewer.canary)), *viewer.omitted_probes()]
    probes += [
        Probe("path traversal", "GET", target)
        for target in _traversal_paths(viewer.mounts, viewer.canary)
    ]
    rounds = reliability_tally.trials(1, 2)
    budget_s = reliability_tally.trials(10, 600)
    n = min(len(probes), reliability_tally.trials(1_500, len(probes)))
    rng = random.Random(15)
    chosen = [p for _ in range(rounds) for p in rng.sample(probes, n)]
    viewer.run(chosen, budget_s=budget_s)
    viewer.check_health()


def test_wrong_methods_oversized_bodies_and_malformed_http(viewer: Viewer) -> None:
    """Other methods on every route (with bodies far larger than announced or sent), then
    requests that are not valid HTTP at all: 405 or 400, or the connection dropped."""
    probes = [
        Probe("wrong methods", method, target)
        for target in viewer.valid_targets()
        for method in METHODS
    ]
    probes += [
        Probe("oversized", "POST", target, body=b"x" * 65_536, announced=10**12)
        for target in viewer.valid_targets()
    ]
    probes += [Probe("malformed HTTP", "", "", raw=raw) for raw in _malformed_http()]
    viewer.run(probes, budget_s=reliability_tally.trials(10, 120))
    viewer.check_health()


def test_requests_for_other_host_names_are_refused(viewer: Viewer) -> None:
    """DNS rebinding: a page's own name pointed at 127.0.0.1 reaches the viewer with that name
    as its Host; every route refuses it, and answers the loopback names on any port."""
    targets = viewer.valid_targets()
    probes = [
        Probe("foreign hosts", "GET", t, host=h, refuse=True)
        for t in targets
        for h in FOREIGN_HOSTS
    ]
    viewer.run(probes, budget_s=reliability_tally.trials(10, 60))
    for host in LOOPBACK_HOSTS:
        for with_port in (host, f"{host}:{viewer.port}", f"{host}:1"):
            answer = send(viewer.port, Probe("foreign hosts", "GET", "/api/info", host=with_port))
            assert answer.status == 200, f"Host {with_port!r}: {answer.status} {answer.raw!r}"


def test_the_viewer_listens_on_loopback_only(viewer: Viewer) -> None:
    """Started without --host, it is reachable from this machine only."""
    listening = viewer.listening_on()
    if not listening and not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read the listening sockets from")
    assert listening == ["127.0.0.1"]


def test_concurrent_bursts_are_all_answered(viewer: Viewer) -> None:
    """Hundreds of parallel requests (the sample list, whole-slide thumbnails, tiles, patches,
    values, similar regions) from many threads: every one answered, none lost."""
    rng = random.Random(16)
    targets = ["/api/samples"] * reliability_tally.trials(200, 600)
    targets += [f"/api/samples/{s}/thumbnail.jpg" for s in viewer.pyramids] * 50
    targets += [viewer.random_tile(rng) for _ in range(reliability_tally.trials(100, 2000))]
    targets += rng.choices(viewer.valid_targets(), k=reliability_tally.trials(100, 600))
    rng.shuffle(targets)
    probes = [Probe("concurrent burst", "GET", t) for t in targets]
    viewer.run(probes, budget_s=reliability_tally.trials(15, 300), threads=16)
    viewer.check_health()


def test_stalled_clients_do_not_block_the_others(viewer: Viewer) -> None:
    """Clients that send half a request header, or never read their answer, stall only
    themselves: the others are answered within the bound meanwhile."""
    thumbnail = f"/api/samples/{viewer.valid['sample_id']}/thumbnail.jpg"
    unread = f"GET {thumbnail} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    half = b"GET /api/samples HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: "
    stalled = []
    try:
        for i in range(reliability_tally.trials(32, 200)):
            sock = socket.create_connection(("127.0.0.1", viewer.port), timeout=BOUND_S)
            sock.sendall(unread if i % 2 else half)
            stalled.append(sock)
        probes = [Probe("slow clients", "GET", t) for t in viewer.valid_targets()]
        viewer.run(probes * reliability_tally.trials(2, 10), budget_s=20, threads=4)
        # A stalled header completed late is still answered.
        late = exchange(stalled[0], b"*/*\r\nConnection: close\r\n\r\n", started=time.monotonic())
        problems = viewer.judge(Probe("slow clients", "GET", "/api/samples"), late)
        assert not problems, problems
    finally:
        for sock in stalled:
            sock.close()
    viewer.check_health()


def _traversal_texts(canary: Path) -> list[str]:
    """Ways of writing a path to the canary and to /etc/passwd from any folder, as URL text."""
    texts = []
    for target in (str(canary.resolve()), "/etc/passwd"):
        relative = target.lstrip("/")
        up = "../" * 16 + relative
        texts += [
            up,
            quote(up, safe=""),  # %2F for the slashes
            quote(quote(up, safe=""), safe=""),  # double-encoded
            up.replace("..", "%2e%2e"),
            up.replace("../", ".%2e/"),
            up.replace("../", "..%5c"),  # a backslash
            up.replace("../", "..\\"),
            up.replace("../", "%c0%ae%c0%ae/"),  # overlong UTF-8 dots
            up.replace("../", "....//"),
            quote(target, safe=""),  # absolute
            "/" + relative,
            up + "%00.jpg",
            "file://" + target,
        ]
    return texts


def _hostile_values(canary: Path) -> list[tuple[str, str]]:
    """(kind, URL text) of every hostile parameter value."""
    plain: dict[str, list[str]] = {
        "malformed parameters": [
            "", " ", "\x00", "synth_00\x00", "\r\nSet-Cookie: x=1", "-1", "0", "-0",
            "-99999999999999999999999", "99999999999999999999999", "1e308", "-1e308",
            "1e-320", "nan", "NaN", "inf", "-Infinity", "0x1F", "1_000", "1.5", "true", "null",
            "[]", "{}", "\ud800", "☃", "🧬" * 64, "\u202e", "e\u0301" * 200, "\ufeff",
        ],
        "injection strings": [
            "' OR '1'='1", "';--", '"; DROP TABLE spots;--', "<script>alert(1)</script>",
            "${jndi:ldap://127.0.0.1/a}", "{{7*7}}", "__proto__", "$(id)", "`id`",
            "%s%s%s%n", "*", ".*", "(a+)+$", "A|B|C", "|", "tumour|tumour",
        ],
        "oversized": ["A" * 10_000, "9" * 5_000, "Ω" * 3_000],
        "unknown ids": [
            "synth_99", "SYNTH_00", " synth_00", "synth_00 ", "synth_0", "tile_999_999",
            "NOT_A_GENE", "AAAAAAAAAAAAAAAA-1",
        ],
    }  # fmt: skip
    values = [
        (kind, quote(v.encode("utf-8", "surrogatepass"), safe=""))
        for kind, texts in plain.items()
        for v in texts
    ]
    values += [("malformed parameters", text) for text in ("%", "%zz", "%FF%FE", "a%")]
    values += [("path traversal", text) for text in _traversal_texts(canary)]
    return values


def _traversal_paths(mounts: list[str], canary: Path) -> list[str]:
    """Traversal under every mount, the API and the root."""
    prefixes = ["", "/api", "/api/samples", *mounts]
    return [f"{p}/{text}" for p in prefixes for text in _traversal_texts(canary)]


def _malformed_http() -> list[bytes]:
    """Requests that are not (valid) HTTP/1.1."""
    ok = b"GET /api/samples HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    page = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    ranges = (b"0-0," * 2_000, b"99999999999999999999-", b"5-1", b"a-b", b"-0", b"0-")
    return [
        b"GET /\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /\xff\xfe/\xc3\xa9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/samples HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /api/samples\r\n\r\n",
        b"NONSENSE\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),  # a TLS hello
        b"GET /api/samples HTTP/1.1\r\n\r\n",  # no Host
        b"GET http://example.com/api/samples HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET /" + b"A" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        ok + b"X-Big: " + b"A" * 100_000 + b"\r\n\r\n",
        ok + b"".join(b"X-%d: 1\r\n" % i for i in range(2_000)) + b"\r\n",
        ok + b"No colon here\r\n\r\n",
        ok + b"X: a\r\n folded\r\n\r\n",
        ok + b"Content-Length: -1\r\n\r\n",
        ok + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        ok + b"Transfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        ok + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        ok + b"Expect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n",
        *(page + b"Range: bytes=" + r + b"\r\n\r\n" for r in ranges),  # the page is a file
    ]


def _start_server(
    store: Path, model: Path | None, cwd: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """The viewer's process and its port (a free one: retried when another took it first)."""
    for _ in range(3):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "tmescope", "serve", str(store)]
        command += [] if model is None else ["--model", str(model)]
        with (cwd / "serve.log").open("wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [*command, "--port", str(port)], cwd=cwd, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if get(port, "/api/samples").status == 200:
                    return process, port
            except OSError:
                time.sleep(0.2)
        process.kill()
        process.wait()
        if "in use" not in (cwd / "serve.log").read_text():
            break
    pytest.fail(f"the viewer did not start: {(cwd / 'serve.log').read_text()[-2000:]}")


def _app_routes(store: Path) -> list[object]:
    """The app's routes and mounts, as the served process builds them (no model needed: a
    model changes what routes answer, not which exist)."""
    from tmescope.jobs.serve import make_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the page's JavaScript may be missing: the API is here
        return list(make_app(store).routes)
