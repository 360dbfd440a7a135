"""Errors raised by tmescope.

Every error a user can cause is a :class:`TmescopeError`. Each subclass also derives from the
built-in exception that fits it, so ``except FileNotFoundError`` keeps working for library callers.
Messages say what was expected, what was found and how to fix it; the CLI prints them as one line.
"""

from __future__ import annotations


class TmescopeError(Exception):
    """Base class of every error caused by input, configuration or environment."""


class InputNotFoundError(TmescopeError, FileNotFoundError):
    """A file or folder the user named, or one the layout requires, does not exist."""


class SpaceRangerLayoutError(TmescopeError, ValueError):
    """A folder is not laid out like Space Ranger output (no positions, no matrix, …)."""


class PositionsFormatError(TmescopeError, ValueError):
    """A tissue positions file lacks the expected columns or holds values of the wrong kind."""


class CountsFormatError(TmescopeError, ValueError):
    """A count matrix (10x HDF5 or Matrix Market) is truncated, malformed or inconsistent."""


class ScalefactorsError(TmescopeError, ValueError):
    """``scalefactors_json.json`` is missing keys or holds values that cannot be right."""


class SlideReadError(TmescopeError, OSError):
    """An image cannot be opened or read as an RGB slide."""


class ImageMismatchError(TmescopeError, ValueError):
    """An image does not cover the spot coordinates it is meant to hold."""


class ResolutionError(TmescopeError, ValueError):
    """Micrometres per pixel are missing and cannot be derived."""


class MissingDependencyError(TmescopeError, ImportError):
    """An optional dependency needed for this input is not installed."""


class InvalidParameterError(TmescopeError, ValueError):
    """A parameter value is out of its allowed range."""


class TmescopeWarning(UserWarning):
    """Something is off but work can go on (a low-resolution image, two disagreeing matrices …)."""


class SampleContentError(TmescopeError, ValueError):
    """A sample reads fine but holds nothing to work on (no spot in tissue, spots off the image)."""
