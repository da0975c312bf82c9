"""Exceptions raised by :mod:`importers` when a Keras file cannot be read or converted exactly.

Every class derives from :class:`KerasFileError`, itself a :class:`ValueError`, so
``except ValueError`` keeps working for callers that do not care about the detail.
Messages name the file, the exact zip member / HDF5 group / dataset / layer, what was
expected, what was found, and what to do about it. Nothing is ever returned half-read:
a reader either returns a complete result or raises one of these.

* :class:`CorruptFileError`: the bytes are not a well-formed zip / HDF5 / JSON file, or
  the layout is not one Keras writes (truncated file, bad JSON, ``config.json`` not an
  object, gaps in ``vars/<i>``, a JSON key repeated).
* :class:`UnsafeFileError`: reading would be unsafe or unbounded: zip bombs and oversized
  members, absolute or ``..`` member names, duplicate members, pickled ``.npz`` weights,
  HDF5 external or soft links, external or virtual datasets, arrays over the size
  limits, non-numeric (object, variable-length, compound, opaque, string) datasets, JSON
  nested too deeply, hard-link cycles.
* :class:`MissingWeightsError`: a layer named by the config or ``layer_names`` has no
  weights group, a ``weight_names`` entry has no dataset, or a ``.keras`` archive has no
  ``model.weights.h5``.
* :class:`ExtraWeightsError`: (loaders) the file holds more arrays for a layer than the
  receiving module has parameters; they are never dropped silently.
* :class:`WeightShapeError`: (loaders) an array's shape differs from the one the target
  parameter needs.
* :class:`UnsupportedLayerError`: a Keras class or configuration jrnn cannot convert
  exactly, or (reader) a layer whose sub-objects' weight order the file does not record.

Example:
    >>> from importers.errors import KerasFileError, WeightShapeError
    >>> err = WeightShapeError(
    ...     path="m.h5", layer="lstm", weight="kernel", expected=(3, 20), received=(3, 16)
    ... )
    >>> isinstance(err, KerasFileError) and isinstance(err, ValueError)
    True
    >>> print(err)  # doctest: +ELLIPSIS
    m.h5: layer 'lstm', weight 'kernel': expected shape (3, 20), received (3, 16). ...
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CorruptFileError",
    "ExtraWeightsError",
    "KerasFileError",
    "MissingWeightsError",
    "UnsafeFileError",
    "UnsupportedLayerError",
    "WeightShapeError",
]


class KerasFileError(ValueError):
    """Base class: a Keras file cannot be read or converted exactly.

    Args:
        message: the full, human-readable explanation (file, place, expected, found, fix).
        path: the file the error is about, when known.
        where: the zip member, HDF5 group/dataset or layer the error is about, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, where: str | None = None):
        super().__init__(message)
        self.path = path
        self.where = where

    def __reduce__(self):
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type, args: tuple, state: dict[str, Any]) -> KerasFileError:
    err = Exception.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class CorruptFileError(KerasFileError):
    """The file is truncated, not a zip/HDF5/JSON file, or not laid out as Keras writes it."""


class UnsafeFileError(KerasFileError):
    """Reading the file would be unsafe or unbounded, so it is refused.

    Zip bombs, path traversal, duplicate members, pickle, HDF5 links that leave the file,
    arrays or members over the size limits, non-numeric datasets, over-deep JSON.
    """


class MissingWeightsError(KerasFileError):
    """A layer or weight the file itself announces is absent from the file."""


class ExtraWeightsError(KerasFileError):
    """The file holds weights the receiving module has no parameter for (never dropped)."""


class WeightShapeError(KerasFileError):
    """An array's shape differs from the shape the receiving parameter needs.

    Args:
        path: the file the array came from (or a description of the source).
        layer: the Keras layer name.
        weight: the weight's name (e.g. ``"kernel"`` or ``"lstm/lstm_cell/kernel:0"``).
        expected: the shape the target needs.
        received: the shape found in the file.
        hint: what to do; a generic hint is used when omitted.
    """

    def __init__(
        self,
        *,
        path: str | None,
        layer: str,
        weight: str,
        expected: tuple[int, ...],
        received: tuple[int, ...],
        hint: str | None = None,
    ):
        expected = tuple(expected)
        received = tuple(received)
        hint = hint or (
            "Build the jrnn layer with the sizes of the Keras layer that wrote the file "
            "(units, input features, kernel size), or load the matching file."
        )
        super().__init__(
            f"{path}: layer {layer!r}, weight {weight!r}: expected shape {expected}, "
            f"received {received}. {hint}",
            path=path,
            where=f"{layer}/{weight}",
        )
        self.layer = layer
        self.weight = weight
        self.expected = expected
        self.received = received


class UnsupportedLayerError(KerasFileError):
    """A Keras layer class or configuration that jrnn cannot convert exactly.

    Args:
        class_name: the Keras class name (e.g. ``"MultiHeadAttention"``).
        layer_name: the Keras layer name.
        path: the file, when the layer comes from one.
        detail: why it is unsupported and what to do; a generic sentence when omitted.
    """

    def __init__(
        self,
        class_name: str | None,
        layer_name: str,
        *,
        path: str | None = None,
        detail: str | None = None,
    ):
        detail = detail or (
            "jrnn has no exact converter for it; remove the layer from the model or register "
            "a converter for the class."
        )
        prefix = f"{path}: " if path else ""
        super().__init__(
            f"{prefix}layer {layer_name!r} of class {class_name!r} is not supported: {detail}",
            path=path,
            where=layer_name,
        )
        self.class_name = class_name
        self.layer_name = layer_name
