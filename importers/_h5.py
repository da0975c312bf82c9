"""Safe, bounded access to HDF5 files with h5py: links, attributes and numeric datasets.

Every object is reached one link at a time, and only through hard links: soft links,
external links (which would open other files) and user-defined links are refused, as
are datasets stored in external raw files or assembled from other files (virtual
datasets). A dataset is read only after its declared size (``shape`` times item size)
has been checked against ``max_member_bytes``, the running total against
``max_total_bytes`` and, above 256 MiB, against the bytes it actually stores (at most
1000 times more: a shape bomb stores nothing), and only if its dtype is numeric:
float16/32/64, signed and unsigned integers, bool, and Keras 3's bfloat16 (2-byte opaque
data tagged with the attribute ``dtype="bfloat16"``). Attributes are size-checked before
and after reading. Any h5py failure becomes :class:`~importers.errors.CorruptFileError`
naming the object.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator

import h5py
import numpy as np

from importers.errors import CorruptFileError, KerasFileError, UnsafeFileError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_ATTR_BYTES = 64 * 1024**2
MAX_ATTR_ITEMS = 1_000_000
MAX_DEPTH = 64
# Shape bombs: a chunked dataset may declare a huge shape yet store (almost) nothing, and
# reading it allocates the declared size. Keras never compresses its datasets, so above
# this floor the declared size may exceed the stored bytes at most this many times
# (Keras' own guard in saving_lib.safe_get_h5_dataset uses a 4 GiB floor).
BOMB_FLOOR_BYTES = 256 * 1024**2
BOMB_MAX_EXPANSION = 1000
_FLOAT_SIZES = (2, 4, 8)


def has_hdf5_signature(f: io.BufferedIOBase, size: int) -> bool:
    """Whether the file holds the HDF5 signature at offset 0, 512, 1024, 2048, ... (user block)."""
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        f.seek(offset)
        if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


@contextlib.contextmanager
def converted(label: str, where: str, action: str) -> Iterator[None]:
    """Turn h5py/HDF5 failures inside the block into CorruptFileError naming ``where``."""
    try:
        yield
    except KerasFileError:
        raise
    except (
        OSError,
        KeyError,
        RuntimeError,
        ValueError,
        TypeError,
        IndexError,
        ArithmeticError,  # OverflowError from h5py's file-object driver at absurd offsets
    ) as e:
        raise CorruptFileError(
            f"{label}: {where}: cannot {action} ({type(e).__name__}: {e}); the HDF5 file is "
            "truncated or damaged: save the model (or weights) again.",
            path=label,
            where=where,
        ) from e


def open_file(source, label: str) -> h5py.File:
    """Open ``source`` (a path or a binary file object) read-only, or raise CorruptFileError."""
    with converted(label, "/", "open the HDF5 file"):
        return h5py.File(source, "r")


class H5Reader:
    """Link-checked, size-limited reads from one open HDF5 file.

    Args:
        label: how messages name the file (its path, or ``"x.keras!model.weights.h5"``).
        max_member_bytes: largest declared size accepted for one dataset.
        max_total_bytes: largest total of dataset bytes read through this reader.
    """

    def __init__(self, label: str, *, max_member_bytes: int, max_total_bytes: int):
        self.label = label
        self.max_member_bytes = max_member_bytes
        self.max_total_bytes = max_total_bytes
        self.bytes_read = 0

    # -- navigation -------------------------------------------------------------------

    def keys(self, group: h5py.Group, where: str) -> list[str]:
        """The link names in ``group`` (not resolved)."""
        with converted(self.label, where, "list the group"):
            return list(group.keys())

    def child(self, parent: h5py.Group, key: str, where: str):
        """The object linked as ``key`` in ``parent`` through a hard link, or None if absent.

        ``key`` is one path segment; ``where`` is the child's path for messages.
        """
        if not key or "/" in key or key in (".", ".."):
            raise UnsafeFileError(
                f"{self.label}: {where}: the path segment {key!r} is empty, '.', '..' or "
                "contains '/'; Keras never writes such names. Refusing to follow it.",
                path=self.label,
                where=where,
            )
        with converted(self.label, where, "look up the link"):
            link = parent.get(key, default=None, getlink=True)
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            kind = type(link).__name__
            target = ""
            if isinstance(link, h5py.ExternalLink):
                target = f" to {link.filename!r}:{link.path!r}"
            elif isinstance(link, h5py.SoftLink):
                target = f" to {link.path!r}"
            raise UnsafeFileError(
                f"{self.label}: {where} is an HDF5 {kind}{target}, not an object stored in "
                "the file; Keras never writes links, and following them could read other "
                "files or loop. Refusing the file.",
                path=self.label,
                where=where,
            )
        with converted(self.label, where, "open the object"):
            return parent[key]

    def resolve(self, parent: h5py.Group, relpath: str, where: str):
        """Follow ``relpath`` ('a/b/c') one hard link at a time; None if any part is absent.

        ``where`` is the path of ``parent`` for messages ('' for the root).
        """
        obj = parent
        done = where
        for part in relpath.split("/"):
            done = f"{done}/{part}" if done else part
            if not isinstance(obj, h5py.Group):
                return None
            obj = self.child(obj, part, done)
            if obj is None:
                return None
        return obj

    # -- attributes -------------------------------------------------------------------

    def attr(self, obj, name: str, where: str):
        """The value of attribute ``name`` of ``obj`` (size-checked), or None if absent."""
        at = f"{where} attribute {name!r}"
        with converted(self.label, at, "read the attribute"):
            if name not in obj.attrs:
                return None
            aid = obj.attrs.get_id(name)
            shape = aid.shape or ()
            items = math.prod(shape)
            dtype = aid.dtype
        fixed = h5py.check_vlen_dtype(dtype) is None and dtype.kind != "O"
        if items > MAX_ATTR_ITEMS or (fixed and items * dtype.itemsize > MAX_ATTR_BYTES):
            raise UnsafeFileError(
                f"{self.label}: {at} declares {items} items of {dtype}, over the "
                f"{MAX_ATTR_BYTES}-byte limit for attributes; refusing to read it.",
                path=self.label,
                where=at,
            )
        with converted(self.label, at, "read the attribute"):
            value = obj.attrs[name]
        strings = [value] if isinstance(value, str | bytes) else []
        if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
            strings = [v for v in value.ravel() if isinstance(v, str | bytes)]
        if sum(len(s) for s in strings) > MAX_ATTR_BYTES:
            raise UnsafeFileError(
                f"{self.label}: {at} holds more than {MAX_ATTR_BYTES} bytes of text; refusing it.",
                path=self.label,
                where=at,
            )
        return value

    def text(self, obj, name: str, where: str) -> str | None:
        """Attribute ``name`` as a str (bytes are decoded as UTF-8), or None if absent."""
        value = self.attr(obj, name, where)
        if value is None:
            return None
        if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "OSU":
            value = value[()]
        return self._decode(value, f"{where} attribute {name!r}")

    def text_list(self, obj, name: str, where: str) -> list[str] | None:
        """A list-of-strings attribute, also when Keras chunked it as ``name0``, ``name1``...

        None when neither ``name`` nor ``name0`` exists. Empty float arrays (how Keras
        stores an empty list) give ``[]``.
        """
        value = self.attr(obj, name, where)
        if value is not None:
            return self._list(value, f"{where} attribute {name!r}")
        out: list[str] | None = None
        chunk = 0
        while True:
            value = self.attr(obj, f"{name}{chunk}", where)
            if value is None:
                return out
            out = (out or []) + self._list(value, f"{where} attribute '{name}{chunk}'")
            if len(out) > MAX_ATTR_ITEMS:
                raise UnsafeFileError(
                    f"{self.label}: {where} attribute {name!r} lists more than "
                    f"{MAX_ATTR_ITEMS} names; refusing it.",
                    path=self.label,
                    where=where,
                )
            chunk += 1

    def _list(self, value, at: str) -> list[str]:
        if isinstance(value, str | bytes):
            return [self._decode(value, at)]
        if isinstance(value, np.ndarray):
            if value.size == 0:
                return []
            if value.ndim == 1 and value.dtype.kind in "OSU":
                return [self._decode(v, at) for v in value]
        raise CorruptFileError(
            f"{self.label}: {at}: expected a list of names (strings), found "
            f"{type(value).__name__} {getattr(value, 'dtype', '')} "
            f"{getattr(value, 'shape', '')}; the file is not a Keras weights file or is damaged.",
            path=self.label,
            where=at,
        )

    def _decode(self, value, at: str) -> str:
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CorruptFileError(
                    f"{self.label}: {at}: not valid UTF-8 ({e}); the file is damaged.",
                    path=self.label,
                    where=at,
                ) from e
        if isinstance(value, str):
            return value
        raise CorruptFileError(
            f"{self.label}: {at}: expected a string, found {type(value).__name__} {value!r:.80}; "
            "the file is not a Keras file or is damaged.",
            path=self.label,
            where=at,
        )

    # -- datasets ---------------------------------------------------------------------

    def array(self, obj, where: str) -> np.ndarray:
        """Read dataset ``obj`` into a NumPy array after the safety and size checks."""
        if not isinstance(obj, h5py.Dataset):
            raise CorruptFileError(
                f"{self.label}: {where}: expected a dataset (an array), found a "
                f"{type(obj).__name__}; the file is not laid out as Keras writes weights.",
                path=self.label,
                where=where,
            )
        with converted(self.label, where, "inspect the dataset"):
            dtype = obj.dtype
            shape = obj.shape
            external = obj.external
            virtual = obj.is_virtual
        if external or virtual:
            what = f"stored in external files {external!r}" if external else "a virtual dataset"
            raise UnsafeFileError(
                f"{self.label}: {where} is {what}, whose data lives outside this file; "
                "Keras never writes such datasets. Refusing the file.",
                path=self.label,
                where=where,
            )
        bfloat16 = self._is_bfloat16(obj, dtype, where)
        if not bfloat16 and not _numeric(dtype):
            raise UnsafeFileError(
                f"{self.label}: {where} has dtype {_describe(dtype)}; weights must be numeric "
                "arrays (float16/32/64, bfloat16 tagged as Keras 3 writes it, int, uint, "
                "bool). Refusing to read non-numeric data (object, variable-length, "
                "compound, opaque or string types); the file was not written by Keras.",
                path=self.label,
                where=where,
            )
        if shape is None:
            raise CorruptFileError(
                f"{self.label}: {where} has a null dataspace (no shape); expected an array.",
                path=self.label,
                where=where,
            )
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.max_member_bytes:
            raise UnsafeFileError(
                f"{self.label}: {where} declares shape {shape} of {dtype} = {nbytes} bytes, "
                f"over the limit of {self.max_member_bytes} bytes for one array "
                "(max_member_bytes). If you trust the file, pass a larger max_member_bytes.",
                path=self.label,
                where=where,
            )
        if nbytes > BOMB_FLOOR_BYTES:
            with converted(self.label, where, "inspect the dataset"):
                stored = obj.id.get_storage_size()
            if nbytes > BOMB_MAX_EXPANSION * stored:
                raise UnsafeFileError(
                    f"{self.label}: {where} declares shape {shape} of {dtype} = {nbytes} "
                    f"bytes but stores only {stored} bytes; reading it would allocate the "
                    "declared size from (next to) nothing (a shape or decompression bomb). "
                    "Keras writes arrays uncompressed. Refusing the file.",
                    path=self.label,
                    where=where,
                )
        if self.bytes_read + nbytes > self.max_total_bytes:
            raise UnsafeFileError(
                f"{self.label}: reading {where} ({nbytes} bytes) would bring the arrays read "
                f"to {self.bytes_read + nbytes} bytes, over the limit of "
                f"{self.max_total_bytes} (max_total_bytes). If you trust the file, pass a "
                "larger max_total_bytes.",
                path=self.label,
                where=where,
            )
        with converted(self.label, where, "read the dataset"):
            value = np.asarray(obj[()])
        if value.shape != tuple(shape):
            raise CorruptFileError(
                f"{self.label}: {where} declares shape {shape} but reading gave "
                f"{value.shape}; the file is damaged.",
                path=self.label,
                where=where,
            )
        self.bytes_read += nbytes
        if bfloat16:
            import ml_dtypes

            return value.view(ml_dtypes.bfloat16)
        if not value.dtype.isnative:
            value = value.astype(value.dtype.newbyteorder("="))
        return value

    def _is_bfloat16(self, obj, dtype: np.dtype, where: str) -> bool:
        if dtype.kind != "V" or dtype.itemsize != 2 or dtype.fields is not None:
            return False
        return self.text(obj, "dtype", where) == "bfloat16"


def _numeric(dtype: np.dtype) -> bool:
    if dtype.fields is not None or dtype.subdtype is not None:
        return False
    if h5py.check_vlen_dtype(dtype) is not None or h5py.check_string_dtype(dtype) is not None:
        return False
    if dtype.kind == "f":
        return dtype.itemsize in _FLOAT_SIZES
    return dtype.kind in "iub"


def _describe(dtype: np.dtype) -> str:
    vlen = h5py.check_vlen_dtype(dtype)
    if vlen is not None:
        return f"variable-length {vlen}"
    if dtype.fields is not None:
        return f"compound {dtype}"
    if dtype.kind == "V":
        return f"opaque {dtype} ({dtype.itemsize} bytes, no dtype='bfloat16' tag)"
    if dtype.kind == "O":
        return f"object {dtype}"
    return str(dtype)
