"""The package version, in a module of its own so that any room can record it (stores, model
folders, reports) without importing the package's public face."""

__version__ = "0.1.0"
