"""Which host names the viewer answers for: a defence against DNS rebinding.

A web page from another site can point a name of its own at 127.0.0.1 and then, from the
user's browser, read a local server as if it were that site (the browser sees one origin) —
the slides and expression of the store. The browser still names that site in the ``Host``
header, so a viewer bound to loopback answers only requests that name a loopback host;
``tmescope.jobs.serve`` adds :class:`HostCheck` when it binds to one.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class HostCheck:
    """ASGI middleware: an HTTP request whose ``Host`` names none of ``allowed`` (on any port)
    gets a 400 that says why; everything else (lifespan included) passes through. The app has
    no WebSocket routes, so only HTTP is checked."""

    def __init__(self, app: ASGIApp, *, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(name) for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = host_name(Headers(scope=scope).get("host", ""))
            if host not in self.allowed:
                shown = repr(host[:80]) if host else "none"
                detail = (
                    f"this viewer answers requests for {', '.join(sorted(self.allowed))} only, "
                    f"not for host {shown} (another name pointing at this machine is how a web "
                    "page reads local servers); open it at http://127.0.0.1:PORT/, or serve on "
                    "another --host"
                )
                await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(header: str) -> str:
    """The host of a ``Host`` header: lower case, without its port or a trailing dot; an IPv6
    address keeps its brackets (``[::1]``)."""
    header = header.strip().lower()
    if header.startswith("["):
        name = header[: header.find("]") + 1]  # no "]": empty, which no list allows
    elif header.count(":") == 1:
        name = header.partition(":")[0]
    else:
        name = header
    return name.rstrip(".")
