"""Hostile requests for the viewer's abuse test (``tests/reliability/test_viewer_abuse.py``).

A raw HTTP/1.1 client (any byte can be sent: NULs, bad encodings, garbage instead of HTTP), the
app's routes as templates to fill, and :class:`Viewer`, a served process with the checks every
answer must pass and the tallies of what was tried. The hostile values are the test's.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import socket
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import reliability_tally

HOST = "127.0.0.1"
BOUND_S = 10.0  # every answer, however hostile the request, within this
# The warm-up's first requests import the analysis libraries and predict: seconds, once.
WARM_UP_S = 180.0
# The server's memory over the module, from after the warm-up: room for the tile cache (64 MB)
# and the worker threads' allocator arenas, not for a cache without bound.
RSS_GROWTH_MB = 300
PASSWD = b"root:"  # in /etc/passwd: no answer may hold it
# Kinds of request that may be dropped (connection closed) instead of answered: not HTTP at all.
MAY_DROP = frozenset({"malformed HTTP", "oversized"})
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: the connection closed without a status line
    raw: bytes  # status line, headers and body
    seconds: float
    timed_out: bool = False


@dataclass(frozen=True)
class Probe:
    """One request: ``target`` is sent as is (percent-encoded already where meant to be)."""

    kind: str  # the tally's subject: "path traversal", "malformed parameters", …
    method: str
    target: str
    body: bytes = b""
    announced: int | None = None  # a Content-Length other than the body's
    raw: bytes | None = None  # bytes sent instead of a request built from the above
    host: str = HOST  # the Host header
    refuse: bool = False  # the answer must be 4xx (a Host of another site)

    def request(self) -> bytes:
        if self.raw is not None:
            return self.raw
        head = f"{self.method} {self.target} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n"
        if self.body or self.announced is not None:
            length = len(self.body) if self.announced is None else self.announced
            head += f"Content-Length: {length}\r\n"
        return head.encode("ascii") + b"\r\n" + self.body


def send(port: int, probe: Probe, *, bound_s: float = BOUND_S) -> Answer:
    """Send ``probe`` on a fresh connection and read the answer until the server closes it."""
    started = time.monotonic()
    sock = socket.create_connection((HOST, port), timeout=bound_s)
    with sock:
        # Answered (or dropped) before reading it all: read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(probe.request())
        return exchange(sock, b"", started=started, bound_s=bound_s)


def exchange(
    sock: socket.socket, data: bytes, *, started: float, bound_s: float = BOUND_S
) -> Answer:
    """Send ``data`` on an open socket, then read until the answer is complete or closed."""
    chunks: list[bytes] = []
    try:
        if data:
            sock.sendall(data)
        while not _complete(b"".join(chunks)):
            left = bound_s - (time.monotonic() - started)
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except TimeoutError:
        return Answer(_status(b"".join(chunks)), b"".join(chunks), bound_s, timed_out=True)
    except ConnectionResetError:
        pass  # dropped: what came before the reset (if anything) is the answer
    raw = b"".join(chunks)
    return Answer(_status(raw), raw, time.monotonic() - started)


def get(port: int, target: str, *, bound_s: float = BOUND_S) -> Answer:
    return send(port, Probe("health", "GET", target), bound_s=bound_s)


def _status(raw: bytes) -> int | None:
    if not raw.startswith(b"HTTP/1."):
        return None
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return found is not None and len(body) >= int(found.group(1))


@dataclass(frozen=True)
class Route:
    """A route or mount of the app: its path template and the names of its parameters."""

    path: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    required_query: tuple[str, ...]


def describe_routes(routes: list[object]) -> tuple[list[Route], list[str]]:
    """The app's GET routes and its mounts' paths."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    described, mounts = [], []
    for route in routes:
        if isinstance(route, Mount):
            mounts.append(route.path)
            continue
        path = getattr(route, "path", None)
        if path is None or "GET" not in (getattr(route, "methods", None) or ()):
            continue
        query: list[str] = []
        required: list[str] = []
        if isinstance(route, APIRoute):
            for param in route.dependant.query_params:
                query.append(param.alias)
                if param.field_info.is_required():
                    required.append(param.alias)
        names = tuple(m.group(1) for m in _PARAM.finditer(path))
        described.append(Route(path, names, tuple(query), tuple(required)))
    return described, mounts


@dataclass
class Viewer:
    """The served viewer, what is valid in its store, and what abuse did to it."""

    process: subprocess.Popen[bytes]
    port: int
    secret: str
    canary: Path
    routes: list[Route] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    valid: dict[str, str] = field(default_factory=dict)
    pyramids: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    worst_s: float = 0.0
    baseline_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def warm_up(self, app_routes: list[object]) -> None:
        """Learn valid values from the store, then read every route once with them (2xx
        each: the catalogue reaches past validation), and take the memory's baseline."""
        self.routes, self.mounts = describe_routes(app_routes)
        samples = self._json("/api/samples")
        sample = samples[0]["id"]
        genes = self._json(f"/api/samples/{sample}")["genes"]
        for s in samples:
            dz = self._json(f"/api/samples/{s['id']}/dzi")
            self.pyramids[s["id"]] = (dz["width"], dz["height"], dz["max_level"], dz["tile_size"])
        spots = self._json(f"/api/samples/{sample}/spots")
        width, height, max_level, _ = self.pyramids[sample]
        self.valid = {
            "sample_id": sample, "sample": sample, "layer": "predicted",
            "spot": spots["barcode"][spots["kind"].index("spot")],
            "feature": genes[0], "x": f"{width / 2:.1f}", "y": f"{height / 2:.1f}",
            "size": "160", "k": "5", "space": "raw", "kind": "enrichment",
            "level": str(max_level), "col": "0", "row": "0",
        }  # fmt: skip
        modelled = bool(samples[0]["has_predictions"])
        # A store without two groups of two patients has no comparison: its routes say why.
        design = self._json("/api/info").get("comparison")
        comparable = bool(design and design["ready"])
        if modelled:
            self.valid["population"] = self._json(f"/api/samples/{sample}/bins")["populations"][0]
        else:  # the measured layer only; the model's routes answer 409, saying why
            self.valid.update(layer="measured", population="")
        for route in self.routes:
            target = self._target(route, {})
            answer = get(self.port, target, bound_s=WARM_UP_S)
            known = all(name in self.valid for name in route.path_params + route.required_query)
            ungrouped = route.path.startswith("/api/compare") and not comparable
            fine = answer.status is not None and (
                answer.status < 300 or not known or (not modelled and answer.status == 409)
                or (ungrouped and answer.status in (404, 409))
            )  # fmt: skip
            assert fine, f"GET {target} with valid values: {answer.status} {answer.raw[-300:]!r}"
        self.baseline_rss_mb = self.peak_rss_mb = self.rss_mb()

    def valid_targets(self) -> list[str]:
        return [self._target(route, {}) for route in self.routes]

    def parameter_probes(self, values: list[tuple[str, str]]) -> list[Probe]:
        """Each hostile value in each parameter of each route, the others valid."""
        return [
            Probe(kind, "GET", self._target(route, {name: text}))
            for route in self.routes
            for name in (*route.path_params, *route.query_params)
            for kind, text in values
        ]

    def omitted_probes(self) -> list[Probe]:
        return [
            Probe("malformed parameters", "GET", self._target(route, {name: None}))
            for route in self.routes
            for name in route.query_params
        ]

    def random_tile(self, rng: random.Random) -> str:
        """A tile of a sample's pyramid, one in ten beyond its edge or levels."""
        sample = rng.choice(sorted(self.pyramids))
        width, height, max_level, tile_size = self.pyramids[sample]
        level = rng.randint(0, max_level)
        scale = 2.0 ** (max_level - level)
        cols = math.ceil(math.ceil(width / scale) / tile_size)
        rows = math.ceil(math.ceil(height / scale) / tile_size)
        col, row = rng.randrange(cols), rng.randrange(rows)
        if rng.random() < 0.1:
            level, col, row = rng.choice([(max_level + 1, 0, 0), (level, cols, row), (99, 9, 9)])
        return f"/api/samples/{sample}/tiles/{level}/{col}_{row}.jpg"

    def run(self, probes: list[Probe], *, budget_s: float, threads: int = 1) -> None:
        """Send ``probes`` (stopping when ``budget_s`` is spent) and judge every answer."""
        deadline = time.monotonic() + budget_s
        problems: list[str] = []
        done = threading.Event()

        def one(probe: Probe) -> None:
            if time.monotonic() < deadline:
                problems.extend(self.judge(probe, send(self.port, probe)))

        def watch_memory() -> None:  # a peak between two checks counts too
            while not done.wait(0.1):
                with self._lock:
                    self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())

        watcher = threading.Thread(target=watch_memory, daemon=True)
        watcher.start()
        try:
            if threads == 1:
                for probe in probes:
                    one(probe)
            else:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(one, probes))
        finally:
            done.set()
            watcher.join()
        shown = "\n".join(problems[:20])
        assert not problems, f"{len(problems)} bad answers, the first:\n{shown}"

    def judge(self, probe: Probe, answer: Answer) -> list[str]:
        """What is wrong with ``answer`` (nothing, usually), tallied by the probe's kind."""
        outcome = Counter[str]()
        problems = []
        what = (
            f"{probe.method} {probe.target[:160]!r}" if probe.raw is None else repr(probe.raw[:80])
        )
        if answer.timed_out or answer.seconds > BOUND_S:
            outcome["timed_out"] += 1
            problems.append(f"{what}: no answer in {BOUND_S:g} s")
        elif answer.status is None:
            outcome["dropped"] += 1
            if probe.kind not in MAY_DROP:
                problems.append(f"{what}: the connection closed without an answer")
        elif answer.status >= 500 or answer.status < 200:
            outcome["server_error"] += 1
            problems.append(f"{what}: {answer.status} {answer.raw[-300:]!r}")
        elif probe.refuse and answer.status < 400:
            outcome["served_foreign_host"] += 1
            problems.append(f"{what} for host {probe.host!r}: answered {answer.status}")
        else:
            outcome["refused" if answer.status >= 400 else "served"] += 1
        if self.secret.encode() in answer.raw or PASSWD in answer.raw:
            outcome["leaked"] += 1
            problems.append(f"{what}: the answer holds a file from outside the store")
        reliability_tally.count("viewer", probe.kind, **outcome)
        with self._lock:
            self.worst_s = max(self.worst_s, answer.seconds)
        return problems

    def check_health(self) -> None:
        """Alive, answering, no file outside the store open, memory within its bound."""
        assert self.process.poll() is None, f"the viewer exited ({self.process.returncode})"
        answer = get(self.port, "/api/samples")
        assert answer.status == 200, f"the viewer stopped answering: {answer}"
        opened = [f for f in self.open_files() if f in (str(self.canary), "/etc/passwd")]
        assert not opened, f"the viewer holds files outside the store open: {opened}"
        self.peak_rss_mb = max(self.peak_rss_mb, self.rss_mb())
        assert self.rss_growth_mb() < RSS_GROWTH_MB, (
            f"the viewer's memory grew by {self.rss_growth_mb():.0f} MB (bound {RSS_GROWTH_MB})"
        )

    def rss_mb(self) -> float:
        """The server's resident memory, MB (0 where /proc is not there to say)."""
        status = Path(f"/proc/{self.process.pid}/status")
        if not status.exists():
            return 0.0
        found = re.search(r"VmRSS:\s+(\d+) kB", status.read_text())
        return int(found.group(1)) / 1024 if found else 0.0

    def rss_growth_mb(self) -> float:
        return self.peak_rss_mb - self.baseline_rss_mb

    def open_files(self) -> list[str]:
        folder = Path(f"/proc/{self.process.pid}/fd")
        found = []
        for fd in folder.glob("*") if folder.exists() else ():
            try:
                found.append(os.readlink(fd))
            except OSError:
                continue  # closed meanwhile
        return found

    def listening_on(self) -> list[str]:
        """The addresses (IPv4, as /proc/net/tcp writes them) that listen on the viewer's port."""
        table = Path("/proc/net/tcp")
        found = []
        for line in table.read_text().splitlines()[1:] if table.exists() else ():
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if int(port, 16) == self.port and state == "0A":  # 0A: LISTEN
                found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
        return found

    def _target(self, route: Route, given: dict[str, str | None]) -> str:
        """``route`` with valid values but ``given`` (URL text; ``None``: left out)."""
        valid = dict(self.valid)
        if "/bins/" in route.path:  # the sub-spot layers and their populations
            valid.update(layer="populations", feature=self.valid["population"])
        if route.path.startswith("/api/compare/"):  # the comparison's figures
            valid.update(kind="differences")

        def value(name: str) -> str | None:
            if name in given:
                return given[name]
            return quote(valid.get(name, "1"), safe="")

        path = _PARAM.sub(lambda m: value(m.group(1)) or "", route.path)
        query = [
            f"{name}={text}"
            for name in route.query_params
            if (text := value(name)) is not None
            and (name in route.required_query or name in valid or name in given)
        ]
        return path + ("?" + "&".join(query) if query else "")

    def _json(self, target: str) -> Any:
        answer = get(self.port, target, bound_s=WARM_UP_S)
        assert answer.status == 200, f"GET {target}: {answer.status} {answer.raw[-300:]!r}"
        return json.loads(answer.raw.partition(b"\r\n\r\n")[2])
