"""The viewer's guards, without a store: its caches stay bounded and make a value once, and a
viewer on loopback answers only for loopback host names (DNS rebinding)."""

from __future__ import annotations

import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tmescope.viz.app.hosts import LOOPBACK_NAMES, HostCheck, host_name
from tmescope.viz.app.kept import Kept, KeptBytes


def test_kept_makes_a_value_once_for_concurrent_first_requests() -> None:
    kept: Kept[str, int] = Kept(2)
    made = []

    def make() -> int:
        made.append(1)
        time.sleep(0.05)  # long enough for every thread to ask meanwhile
        return 7

    threads = [threading.Thread(target=kept.get, args=("a", make)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and kept.get("a", make) == 7


def test_kept_keeps_the_latest_values_only() -> None:
    kept: Kept[int, int] = Kept(2)
    kept.get(1, lambda: 10)
    kept.get(2, lambda: 20)
    assert kept.get(1, lambda: -1) == 10  # kept, and now used after 2
    kept.get(3, lambda: 30)  # one too many: 2 goes
    assert kept.get(1, lambda: -1) == 10 and kept.get(2, lambda: -1) == -1
    with pytest.raises(ValueError, match="at least 1"):
        Kept(0)


def test_kept_bytes_stay_under_their_total() -> None:
    kept: KeptBytes[int] = KeptBytes(1_000)
    for key in range(50):
        kept.put(key, bytes(100))
    assert kept.n_bytes <= 1_000 and kept.get(49) is not None and kept.get(0) is None
    kept.put(99, bytes(5_000))  # larger than the whole cache: not kept, nothing evicted
    assert kept.get(99) is None and kept.get(49) is not None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8765", "127.0.0.1"), ("LocalHost.", "localhost"), ("[::1]:80", "[::1]"),
        ("[::1", ""), ("evil.example:1", "evil.example"), ("::1", "::1"), ("", ""),
    ],
)  # fmt: skip
def test_host_names_drop_the_port(header: str, name: str) -> None:
    assert host_name(header) == name


def test_a_loopback_viewer_refuses_other_host_names() -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("slide"))])
    app.add_middleware(HostCheck, allowed=LOOPBACK_NAMES)
    for host in ("127.0.0.1:8765", "localhost", "[::1]:1"):
        with TestClient(app, base_url=f"http://{host}") as client:
            assert client.get("/").text == "slide"
    for host in ("evil.example", "127.0.0.1.evil.example:8765"):
        with TestClient(app, base_url=f"http://{host}") as client:
            answer = client.get("/")
        assert answer.status_code == 400
        assert "answers requests for 127.0.0.1, [::1], localhost only" in answer.json()["detail"]
