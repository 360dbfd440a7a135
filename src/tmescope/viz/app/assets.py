"""Where the viewer's third-party JavaScript (OpenSeadragon) lies on this machine.

The libraries are installed from the npm registry into ``viewer/node_modules`` by
``make viewer-assets`` (``npm ci --prefix viewer``) and never committed. The package is installed
editable, so the folder is found relative to the repository; ``TMESCOPE_VIEWER_ASSETS`` names
another ``openseadragon`` build folder (an installed wheel, a packaged copy).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ASSETS_ENV = "TMESCOPE_VIEWER_ASSETS"
MISSING_MESSAGE = (
    "the viewer's JavaScript libraries are missing: run `make viewer-assets` (npm ci in viewer/)"
)
# Inside viewer/node_modules, the folder npm's openseadragon package builds into.
_OSD_BUILD = Path("openseadragon", "build", "openseadragon")
_OSD_SCRIPT = "openseadragon.min.js"


def static_dir() -> Path:
    """The page itself (HTML, our ES modules, CSS), shipped as package data."""
    return Path(str(resources.files("tmescope.viz") / "static"))


def openseadragon_dir() -> Path | None:
    """The OpenSeadragon build folder (holding ``openseadragon.min.js`` and ``images/``), or
    ``None`` when it is not installed."""
    override = os.environ.get(ASSETS_ENV)
    if override:
        candidates = [Path(override).expanduser()]
    else:
        # src/tmescope/viz/app/assets.py → the repository root is four folders up.
        repository = Path(__file__).resolve().parents[4]
        candidates = [repository / "viewer" / "node_modules" / _OSD_BUILD]
    for folder in candidates:
        if (folder / _OSD_SCRIPT).is_file():
            return folder
    return None
