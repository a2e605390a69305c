"""Reading ``.npy`` and ``.npz`` files that may be broken or hostile: every header is checked
against what the file holds before anything is allocated.

``np.load`` trusts an array's header: an ``.npz`` member whose ``.npy`` header claims shape
(99999999, 99999) makes NumPy allocate 72.8 TiB before it notices that the member holds a
few bytes. Here each header is read first (NumPy's own header parser, with its
``max_header_size`` guard), its shape times its item size is compared with the bytes the
file (or the zip member) actually holds, and only then is the data read, into a buffer of
exactly that size. Nothing is unpickled: object dtypes are refused.

The checks, all made before the data is read:

* ``.npy``: the header parses (format 1.0 or 2.0, at most :data:`MAX_HEADER_SIZE` bytes), the
  dtype holds no Python objects and is not a structured record, and the data after the
  header is exactly shape x itemsize bytes (a shorter file is truncated, a longer one has
  trailing bytes).
* ``.npz``: a readable zip archive; no member name twice; members stored or deflated (what
  NumPy writes), not encrypted; a stored member's size is its size on disk; a deflated
  member declares at most :data:`MAX_EXPANSION` times its compressed size (deflate cannot
  expand more than about 1032:1, so no genuine member is refused and a lying header is);
  each ``.npy`` member is then checked as above against its declared size, and the zip's
  CRC-32 is verified as it is read.

Every refusal is a :class:`FileFormatError` (a :class:`fastnn.data.DataError`, hence a
``ValueError``) whose message starts with the file's name and says which member or byte; a
missing file is a ``FileNotFoundError`` saying "no such file".
"""

from __future__ import annotations

import io
import os
import struct
import tokenize
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

from .data import DataError

__all__ = ["MAX_EXPANSION", "MAX_HEADER_SIZE", "FileFormatError", "check_file",
           "npz_member_names", "read_npy", "read_npz"]

#: Largest ``.npy`` header accepted (NumPy's own default for ``max_header_size``).
MAX_HEADER_SIZE = 10000
#: A deflated zip member may declare at most this many times its compressed size
#: (deflate's own maximum ratio is about 1032:1).
MAX_EXPANSION = 1032
#: The exceptions the standard library's zip and zlib code and NumPy's header parser raise
#: on malformed input. Inside the readers below each means "this file is broken".
_BROKEN = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
           TypeError, KeyError, IndexError, struct.error, zlib.error, NotImplementedError,
           RuntimeError, OverflowError, SyntaxError, tokenize.TokenError)


class FileFormatError(DataError):
    """A file fastnn refuses: broken, truncated, foreign or hostile. The message starts with
    the file's name and says where (the line, the zip member, the byte) when that is known.

    The one base of every reader's refusals (data sets, checkpoints, safetensors); a
    ``ValueError``, so ``except ValueError`` keeps working. The command line turns it into
    exit code 2 and one line.
    """


def check_file(path) -> str:
    """``path`` as a string, or FileNotFoundError ("no such file") when it is not a file."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        what = "is a directory, not a file" if os.path.isdir(name) else "no such file"
        raise FileNotFoundError(f"{what}: {name}")
    return name


def _header(fp, where: str, error: type[FileFormatError]):
    """Parse a ``.npy`` header from ``fp``: (shape, fortran_order, dtype, nbytes)."""
    try:
        version = npy_format.read_magic(fp)
    except _BROKEN as exc:
        raise error(f"{where}: not a .npy array ({exc})") from None
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    if version not in readers:
        raise error(f"{where}: .npy format version {version[0]}.{version[1]}, fastnn reads "
                    "1.0 and 2.0 (what NumPy writes for plain arrays)")
    # NumPy reads the header's declared length before comparing it with max_header_size:
    # read and check the length first, then hand NumPy the bytes.
    length_format = "<H" if version == (1, 0) else "<I"
    try:
        length = fp.read(struct.calcsize(length_format))
        if len(length) < struct.calcsize(length_format):
            raise error(f"{where}: truncated in the .npy header")
        (header_length,) = struct.unpack(length_format, length)
        if header_length > MAX_HEADER_SIZE:
            raise error(f"{where}: a .npy header of {header_length} bytes, over the limit of "
                        f"{MAX_HEADER_SIZE} (NumPy's max_header_size)")
        header = fp.read(header_length)
    except FileFormatError:
        raise
    except _BROKEN as exc:
        raise error(f"{where}: cannot read the .npy header ({str(exc)[:200]})") from None
    if len(header) < header_length:
        raise error(f"{where}: truncated: a .npy header of {header_length} bytes declared, "
                    f"{len(header)} found")
    try:
        shape, fortran, dtype = readers[version](io.BytesIO(length + header),
                                                 max_header_size=MAX_HEADER_SIZE)
    except _BROKEN as exc:
        raise error(f"{where}: a broken .npy header ({type(exc).__name__}: "
                    f"{str(exc)[:200]})") from None
    if dtype.hasobject:
        raise error(f"{where}: holds Python objects (dtype {dtype}), which fastnn does not read "
                    "without pickle; save strings as a str array, e.g. y.astype(str)")
    if dtype.kind == "V":
        raise error(f"{where}: a structured or void dtype ({str(dtype)[:80]}), which fastnn "
                    "does not read")
    count = 1
    for d in shape:
        count *= int(d)
    if count and dtype.itemsize == 0:
        raise error(f"{where}: {count} items of size 0 (dtype {dtype})")
    return tuple(int(d) for d in shape), bool(fortran), dtype, count * dtype.itemsize


def _describe(shape, dtype, nbytes) -> str:
    return f"shape {shape} of {dtype} = {nbytes} bytes"


def _read_exactly(fp, nbytes: int, where: str, error: type[FileFormatError]) -> bytearray:
    """``nbytes`` from ``fp`` into one buffer of that size (its size already checked against
    what the file holds)."""
    buf = bytearray(nbytes)
    view, got = memoryview(buf), 0
    try:
        while got < nbytes:
            n = fp.readinto(view[got:got + (1 << 24)])
            if not n:
                break
            got += n
    except _BROKEN as exc:
        raise error(f"{where}: corrupt data after byte {got} of the array ({type(exc).__name__}: "
                    f"{str(exc)[:200]})") from None
    if got != nbytes:
        raise error(f"{where}: truncated: the header declares {nbytes} bytes of data, "
                    f"found {got}")
    return buf


def _array(buf, shape, fortran: bool, dtype) -> np.ndarray:
    if not len(buf):
        return np.empty(shape, dtype, order="F" if fortran else "C")
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def read_npy(path, *, mmap: bool = False,
             error: type[FileFormatError] = FileFormatError) -> np.ndarray:
    """A ``.npy`` file's array, checked before it is read (see the module's docstring).

    ``mmap``: map the data read-only instead of reading it (an array larger than memory),
    after the same checks.
    """
    name = check_file(path)
    size = os.path.getsize(name)
    with open(name, "rb") as f:
        shape, fortran, dtype, nbytes = _header(f, name, error)
        offset = f.tell()
        held = size - offset
        if nbytes > held:
            raise error(f"{name}: truncated: the header declares {_describe(shape, dtype, nbytes)}"
                        f", the file holds {held} bytes after its {offset}-byte header")
        if nbytes < held:
            raise error(f"{name}: {held - nbytes} trailing bytes after the data at byte "
                        f"{offset + nbytes} (the header declares "
                        f"{_describe(shape, dtype, nbytes)})")
        if mmap and nbytes:
            return np.memmap(name, dtype=dtype, mode="r", offset=offset, shape=shape,
                             order="F" if fortran else "C")
        return _array(_read_exactly(f, nbytes, name, error), shape, fortran, dtype)


def _open_zip(name: str, error: type[FileFormatError]) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(name)
    except _BROKEN as exc:
        raise error(f"{name}: not a readable .npz file (truncated or corrupt, or not a zip "
                    f"archive: {str(exc)[:200]})") from None


def _members(zf: zipfile.ZipFile, name: str, error) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            continue  # np.savez writes only .npy members; anything else is not an array
        key = info.filename[:-4]
        if key in members:
            raise error(f"{name}: the member {info.filename!r} appears twice")
        members[key] = info
    return members


def npz_member_names(path, error: type[FileFormatError] = FileFormatError) -> list[str]:
    """The array names of an ``.npz`` file (its ``.npy`` members without the suffix)."""
    name = check_file(path)
    with _open_zip(name, error) as zf:
        return list(_members(zf, name, error))


def read_npz(path, names=None, *,
             error: type[FileFormatError] = FileFormatError) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file by name (all, or those of ``names`` it holds), each
    checked before it is read (see the module's docstring)."""
    name = check_file(path)
    size = os.path.getsize(name)
    with _open_zip(name, error) as zf:
        members = _members(zf, name, error)
        wanted = list(members) if names is None else [k for k in names if k in members]
        return {key: _read_member(zf, members[key], name, size, error) for key in wanted}


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, size: int,
                 error) -> np.ndarray:
    where = f"{name}, member {info.filename!r}"
    if info.flag_bits & 0x1:
        raise error(f"{where}: encrypted, which fastnn does not read")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise error(f"{where}: compression method {info.compress_type}; fastnn reads stored "
                    "and deflated members (what np.savez and np.savez_compressed write)")
    if info.header_offset + info.compress_size > size:
        raise error(f"{where}: truncated: the member's {info.compress_size} bytes start at byte "
                    f"{info.header_offset} of a {size}-byte file")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise error(f"{where}: a stored member of {info.compress_size} bytes declares "
                    f"{info.file_size} bytes uncompressed")
    if info.file_size > info.compress_size * MAX_EXPANSION + 64:
        raise error(f"{where}: declares {info.file_size} bytes uncompressed from "
                    f"{info.compress_size} compressed, more than deflate can expand "
                    f"({MAX_EXPANSION}:1)")
    try:
        fp = zf.open(info)
    except _BROKEN as exc:
        raise error(f"{where}: cannot be read ({str(exc)[:200]})") from None
    with fp:
        shape, fortran, dtype, nbytes = _header(fp, where, error)
        try:
            offset = fp.tell()
        except _BROKEN as exc:
            raise error(f"{where}: cannot be read ({str(exc)[:200]})") from None
        held = info.file_size - offset
        if nbytes != held:
            what = "truncated: " if nbytes > held else ""
            raise error(f"{where}: {what}the header declares {_describe(shape, dtype, nbytes)}, "
                        f"the member holds {held} bytes after its {offset}-byte header")
        buf = _read_exactly(fp, nbytes, where, error)
        try:
            extra = fp.read(1)  # also reaches the end of the stream, where zipfile checks CRC-32
        except _BROKEN as exc:
            raise error(f"{where}: corrupt ({str(exc)[:200]})") from None
        if extra:
            raise error(f"{where}: more data than its declared size")
    return _array(buf, shape, fortran, dtype)
