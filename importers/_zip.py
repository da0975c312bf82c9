"""Bounded, traversal-safe reading of zip archives (``.keras`` files and ``.npz`` members).

Only :mod:`zipfile`. Nothing is ever extracted to disk: members are read into memory,
one at a time, after checking

* every member name in the archive (absolute paths, drive letters, backslashes, ``..``
  segments, NUL characters, duplicates: :class:`~importers.errors.UnsafeFileError`),
* the member's declared uncompressed size against ``max_member_bytes`` and the running
  total of all members read against ``max_total_bytes``,
* the bytes actually produced while decompressing against the same limits and against
  the declared size (a member that inflates past what it declares is refused), and past a
  floor against :data:`BOMB_MAX_RATIO` times its compressed size, as Keras' own guard
  (deflate reaches ~1000:1 on zeros): :data:`BOMB_FLOOR_BYTES` (Keras' 4 GiB) for
  weights, whose zero-filled arrays may compress that well in a re-zipped archive, and
  :data:`BOMB_FLOOR_JSON_BYTES` for the JSON members, which no model needs, and
* encryption (refused) and CRC errors (:class:`~importers.errors.CorruptFileError`).
"""

from __future__ import annotations

import re
import zipfile
import zlib

from importers.errors import CorruptFileError, MissingWeightsError, UnsafeFileError

MAX_MEMBERS = 100_000
BOMB_FLOOR_BYTES = 4 * 1024**3
BOMB_FLOOR_JSON_BYTES = 64 * 1024**2
BOMB_MAX_RATIO = 100
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_name(name: str) -> str | None:
    """Why a member name is unsafe to honour, or None."""
    if not name:
        return "an empty name"
    if "\x00" in name:
        return "a NUL character"
    if "\\" in name:
        return "a backslash (a Windows path separator)"
    if name.startswith("/") or _DRIVE.match(name):
        return "an absolute path"
    if any(part == ".." for part in name.split("/")):
        return "a '..' segment (path traversal)"
    return None


class SafeZip:
    """A read-only zip archive whose members are read with size limits.

    Args:
        source: a path or a binary file object (for an archive nested in another one).
        label: how messages name the archive (a path, or ``"x.keras!model.weights.npz"``).
        max_member_bytes: largest uncompressed size accepted for one member.
        max_total_bytes: largest total of uncompressed bytes read from the archive.

    Raises:
        CorruptFileError: not a zip archive, truncated, or inconsistent.
        UnsafeFileError: an unsafe member name, duplicate names, too many members.
    """

    def __init__(self, source, label: str, *, max_member_bytes: int, max_total_bytes: int):
        self.label = label
        self.max_member_bytes = max_member_bytes
        self.max_total_bytes = max_total_bytes
        self.bytes_read = 0
        try:
            self._zf = zipfile.ZipFile(source, "r")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise CorruptFileError(
                f"{label}: not a readable zip archive ({type(e).__name__}: {e}); expected a "
                "Keras .keras file (a zip with config.json and model.weights.h5). The file is "
                "truncated or damaged: save the model again.",
                path=label,
            ) from e
        try:
            self._check_names()
        except BaseException:
            self._zf.close()
            raise

    def _check_names(self) -> None:
        infos = self._zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnsafeFileError(
                f"{self.label}: the archive lists {len(infos)} members, more than the "
                f"{MAX_MEMBERS} a Keras file can plausibly have; refusing to read it.",
                path=self.label,
            )
        seen: set[str] = set()
        for info in infos:
            why = _unsafe_name(info.filename)
            if why:
                raise UnsafeFileError(
                    f"{self.label}: archive member {info.filename!r} has {why}; a Keras "
                    "archive only holds relative names such as 'config.json' or "
                    "'assets/...'. Refusing the whole archive: do not load files from "
                    "untrusted sources.",
                    path=self.label,
                    where=info.filename,
                )
            if info.filename in seen:
                raise UnsafeFileError(
                    f"{self.label}: archive member {info.filename!r} appears more than once; "
                    "which copy is meant is ambiguous (Keras never writes duplicates). "
                    "Refusing the archive.",
                    path=self.label,
                    where=info.filename,
                )
            seen.add(info.filename)
        self._names = seen

    def names(self) -> set[str]:
        """The member names (already checked to be safe and unique)."""
        return set(self._names)

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``, within the size limits.

        Raises:
            KeyError: no member ``name`` (see :meth:`read_required`).
            UnsafeFileError: the member declares or produces more bytes than allowed.
            CorruptFileError: encrypted, bad CRC, truncated or undecodable data.
        """
        info = self._zf.getinfo(name)
        where = f"{self.label}!{name}"
        if info.flag_bits & 0x1:
            raise UnsafeFileError(
                f"{where}: the member is encrypted; Keras never encrypts archive members. "
                "Refusing to read it.",
                path=self.label,
                where=name,
            )
        declared = info.file_size
        self._check_size(name, declared, "declares")
        floor = BOMB_FLOOR_JSON_BYTES if name.endswith(".json") else BOMB_FLOOR_BYTES
        out = bytearray()
        try:
            with self._zf.open(info, "r") as f:
                while True:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    out += chunk
                    if len(out) > max(floor, BOMB_MAX_RATIO * info.compress_size):
                        raise UnsafeFileError(
                            f"{where}: the member inflates from {info.compress_size} to more "
                            f"than {len(out)} bytes, over {BOMB_MAX_RATIO} times its "
                            "compressed size (a zip bomb); refusing it.",
                            path=self.label,
                            where=name,
                        )
                    if len(out) > declared:
                        raise UnsafeFileError(
                            f"{where}: the member decompresses to more than the {declared} "
                            "bytes it declares (a zip bomb or a forged header); refusing it.",
                            path=self.label,
                            where=name,
                        )
                    self._check_size(name, len(out), "decompresses to at least")
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
            raise CorruptFileError(
                f"{where}: cannot decompress the member ({type(e).__name__}: {e}); the "
                "archive is truncated or damaged: save the model again.",
                path=self.label,
                where=name,
            ) from e
        if len(out) != declared:
            raise CorruptFileError(
                f"{where}: the member declares {declared} bytes but holds {len(out)}; the "
                "archive is truncated or damaged: save the model again.",
                path=self.label,
                where=name,
            )
        self.bytes_read += len(out)
        return bytes(out)

    def _check_size(self, name: str, size: int, verb: str) -> None:
        where = f"{self.label}!{name}"
        if size > self.max_member_bytes:
            raise UnsafeFileError(
                f"{where}: the member {verb} {size} bytes, over the limit of "
                f"{self.max_member_bytes} bytes for one member (max_member_bytes); a zip "
                "bomb or an unexpectedly large file. If you trust the file, pass a larger "
                "max_member_bytes.",
                path=self.label,
                where=name,
            )
        if self.bytes_read + size > self.max_total_bytes:
            raise UnsafeFileError(
                f"{where}: reading the member ({verb} {size} bytes) would bring the bytes "
                f"read from the archive to {self.bytes_read + size}, over the limit of "
                f"{self.max_total_bytes} (max_total_bytes). If you trust the file, pass a "
                "larger max_total_bytes.",
                path=self.label,
                where=name,
            )

    def read_required(self, name: str, error: type = MissingWeightsError, what: str = "") -> bytes:
        """Like :meth:`read`, raising ``error`` naming the member when it is absent."""
        if name not in self._names:
            raise error(
                f"{self.label}: the archive has no member {name!r}{what}; it holds "
                f"{sorted(self._names)[:20]}. Save the model again with Keras "
                "(model.save('model.keras')).",
                path=self.label,
                where=name,
            )
        return self.read(name)

    def close(self) -> None:
        """Close the archive."""
        self._zf.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
