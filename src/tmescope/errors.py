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


class SampleSheetError(TmescopeError, ValueError):
    """A sample sheet lacks a column, repeats a sample, or names inputs that are not there."""


class ResolutionError(TmescopeError, ValueError):
    """Micrometres per pixel are missing and cannot be derived."""


class MissingDependencyError(TmescopeError, ImportError):
    """An optional dependency needed for this input is not installed."""


class InvalidParameterError(TmescopeError, ValueError):
    """A parameter value is out of its allowed range."""


class WorkerLostError(TmescopeError, RuntimeError):
    """A worker process stopped before its work was done (interrupted, killed, out of memory)."""


class StoreError(TmescopeError, ValueError):
    """A cohort store holds something other than what the operation needs."""


class StoreNotFoundError(InputNotFoundError, StoreError):
    """No cohort store exists at the path given for reading."""


class NotAStoreError(StoreError):
    """A path exists but is not a tmescope cohort store (a plain folder, a foreign Zarr)."""


class StoreNotWritableError(StoreError, PermissionError):
    """A cohort store cannot be created or written at the path given."""


class SchemaVersionError(StoreError):
    """A cohort store was written by a newer tmescope whose format this one cannot read."""


class FingerprintMismatchError(StoreError):
    """A store holds embeddings of another encoder (or settings) than the one asked for."""


class StoreLockedError(StoreError, RuntimeError):
    """Another live process holds the lock on what this one wants to write."""


class SampleNotFoundError(StoreError, LookupError):
    """A sample id is not in the cohort store."""


class SampleConflictError(StoreError):
    """A sample id is already in the store with other inputs or another layout."""


class IncompleteSampleError(StoreError):
    """A sample is still being written (or was interrupted) and cannot be read or finished yet."""


class TmescopeWarning(UserWarning):
    """Something is off but work can go on (a low-resolution image, two disagreeing matrices …)."""


class SampleContentError(TmescopeError, ValueError):
    """A sample reads fine but holds nothing to work on (no spot in tissue, spots off the image)."""


class UnknownEncoderError(TmescopeError, LookupError):
    """An encoder name is not in the registry (the message suggests the nearest names)."""


class WeightsError(TmescopeError, ValueError):
    """A weights file cannot be read, or its tensors do not fit the encoder's architecture."""


class WeightsNotFoundError(TmescopeError, FileNotFoundError):
    """No weights for a model: none given and none in the local Hugging Face cache."""


class GatedModelError(WeightsNotFoundError):
    """Weights of a gated model (licence to accept on Hugging Face) are not available locally."""


class IndexMissingError(StoreError, LookupError):
    """A cohort store has no similarity index yet (or an unreadable one): build it first."""


class MissingBinsError(StoreError, LookupError):
    """A sample was embedded without sub-spot features, and a command needs them."""


class SpotNotFoundError(StoreError, LookupError):
    """A barcode is not among a sample's rows, or no row lies in the region asked for."""


class StaleLockWarning(TmescopeWarning):
    """A lock left by a writer that died holding it was taken over (its work resumes)."""


class StaleIndexWarning(TmescopeWarning):
    """The similarity index does not cover the store's current complete samples."""


class TrainingDataError(TmescopeError, ValueError):
    """A store cannot be trained on as asked (too few samples, missing genes, no counts …)."""


class GeneSetError(TmescopeError, ValueError):
    """A gene-set file cannot be read, or its sets share too few genes with the data."""


class ReferenceDataError(TmescopeError, ValueError):
    """A single-cell reference lacks the label key, or shares too few genes with the store."""


class ModelMismatchError(StoreError):
    """A trained model belongs to another store fingerprint, or its directory is unreadable."""
