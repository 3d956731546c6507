"""Atomic file and folder writes and guarded JSON reads.

Outputs are written to a temporary sibling and moved into place with ``os.replace`` so a crash,
a kill -9 or a full disk never leaves a half-written file under the final name. JSON input is read
with errors turned into one-line ``SegcliError`` messages.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from segcli.errors import SegcliError

MAX_JSON_MB = 512
"""Largest annotation file read, in MB (env SEGCLI_MAX_JSON_MB): Python holds a parsed COCO or
VIA file in about 7x its size (measured in benchmarks/bench_memory.py), so 512 MB needs about
3.5 GB; a bigger file is refused from its size before anything is read."""


def max_json_bytes() -> int:
    """The annotation size limit in bytes (SEGCLI_MAX_JSON_MB, else MAX_JSON_MB)."""
    value = os.environ.get("SEGCLI_MAX_JSON_MB", str(MAX_JSON_MB))
    try:
        megabytes = float(value)
    except ValueError:
        raise SegcliError(f"SEGCLI_MAX_JSON_MB={value!r} is not a number of megabytes") from None
    return int(megabytes * 1024**2)


def not_regular_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (missing, a folder, a FIFO, a device, a name the
    file system cannot hold), or None for a regular file. Checked with ``os.stat`` before any
    ``open``: opening a FIFO for reading blocks until a writer comes, that is forever."""
    try:
        mode = os.stat(path).st_mode
    except ValueError:  # a NUL in the name
        return "the name holds a NUL character"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISREG(mode):
        return None
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
    return f"not a regular file ({kind})"


def read_text(path: Path, what: str = "a text file") -> str:
    """An annotation or classes file as text (UTF-8, BOM allowed): missing files, folders, files
    over the size limit and non-UTF-8 bytes raise SegcliError."""
    path = Path(path)
    if not path.exists():
        raise SegcliError("file not found", path)
    if path.is_dir():
        raise SegcliError(f"is a folder, expected {what}", path)
    if (problem := not_regular_problem(path)) is not None:  # a FIFO would block the read forever
        raise SegcliError(f"{problem}, expected {what}", path)
    limit = max_json_bytes()
    if path.stat().st_size > limit:
        raise SegcliError(f"file is {path.stat().st_size / 1024**2:.0f} MB, larger than the {limit / 1024**2:g} MB "
                          f"limit for annotation files (it would take about 7x that in memory); split it, "
                          f"or raise the limit with SEGCLI_MAX_JSON_MB", path)
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SegcliError(f"not UTF-8 text (byte {exc.start})", path) from None


def read_json(path: Path) -> object:
    """Load a JSON file; malformed, truncated, non-UTF-8 or NaN-bearing files raise SegcliError,
    and so does a key given twice at the top level or in a VIA ``_via_img_metadata`` object
    (where a second entry would replace an image's regions silently)."""
    text = read_text(path, "a JSON file")
    if not text:
        raise SegcliError("file is empty", path)
    try:
        return parse_json(text, check_keys=True)
    except json.JSONDecodeError as exc:
        raise SegcliError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                          path) from None
    except RecursionError:
        raise SegcliError("JSON nested too deeply", path) from None
    except ValueError as exc:
        raise SegcliError(str(exc), path) from None


def parse_json(text: str, check_keys: bool = False) -> object:
    """``json.loads`` refusing what no JSON writer can write back: NaN, Infinity, and numbers
    beyond float range (1e400 would read as inf). ``check_keys``: also refuse a key given twice
    in the top-level object or in its ``_via_img_metadata`` object (json keeps the last).

    Raises:
        json.JSONDecodeError, ValueError (with the reason), RecursionError (nested too deeply).
    """
    fast = _HUGE_NUMBER.search(text) is None  # fast path: no per-number Python callback
    decoder = _DECODER if fast else _CHECKED_DECODER
    try:
        data = decoder.decode(text)
        if check_keys and isinstance(data, dict) and _may_repeat_keys(text, data):
            _decode_checking_keys(text, decoder)  # the slow exact check, raises on a repeated key
        return data
    except _Overflow as exc:
        at = max(text.find(exc.literal), 0)  # the callback is not told where the number is
        line = text.count("\n", 0, at) + 1
        column = at - text.rfind("\n", 0, at)
        shown = exc.literal if len(exc.literal) <= 20 else f"{exc.literal[:17]}..."
        raise ValueError(f"invalid JSON at line {line} column {column}: {shown} is beyond float range") from None


def _may_repeat_keys(text: str, data: dict) -> bool:
    """False when counting strings in ``text`` proves that no key of ``data`` (top level) nor
    of its VIA entries (``_via_img_metadata``, or the top level of a VIA export) was given twice:
    every '"filename"' in the text belongs to an entry that was kept, and each key of a small
    top level is written once. A few ``str.count`` calls (milliseconds for 50 MB), so
    the exact key-by-key check runs only on suspicion."""
    metadata = data.get("_via_img_metadata") if "_via_img_metadata" in data else data
    if isinstance(metadata, dict):
        named = sum(1 for entry in metadata.values() if isinstance(entry, dict) and "filename" in entry)
        if text.count('"filename"') != named:
            return True
    # a big top level is a VIA export, checked above by its entries' file names
    return len(data) <= 64 and any(text.count(json.dumps(key, ensure_ascii=False)) > 1 for key in data)


def _decode_checking_keys(text: str, decoder: json.JSONDecoder) -> object:
    """Decode like ``decoder.decode`` but read the top-level object (and a VIA project's
    ``_via_img_metadata``) key by key, refusing a key given twice. Each value is decoded by the
    C scanner (``raw_decode``), so only one Python step per top-level entry is added."""
    start = _skip_space(text, 0)
    if text.startswith("{", start):
        value, end = _object_checking_keys(text, start, decoder, "at the top level", nested=True)
    else:
        value, end = decoder.raw_decode(text, start)
    end = _skip_space(text, end)
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _object_checking_keys(text: str, start: int, decoder: json.JSONDecoder, where: str,
                          nested: bool) -> tuple[dict, int]:
    """The JSON object at ``text[start] == '{'`` and the index after it; ``nested``: read a
    ``_via_img_metadata`` value key by key too."""
    result: dict = {}
    position = _skip_space(text, start + 1)
    if text.startswith("}", position):
        return result, position + 1
    while True:
        if not text.startswith('"', position):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, position)
        key, position = json.decoder.scanstring(text, position + 1)
        position = _skip_space(text, position)
        if not text.startswith(":", position):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, position)
        key_at = position
        position = _skip_space(text, position + 1)
        if nested and key == "_via_img_metadata" and text.startswith("{", position):
            value, position = _object_checking_keys(text, position, decoder, "in _via_img_metadata", nested=False)
        else:
            try:
                value, position = decoder.scan_once(text, position)  # the C scanner
            except StopIteration as exc:
                raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        if key in result:
            line = text.count("\n", 0, key_at) + 1
            raise ValueError(f"duplicate key {key!r} {where} (line {line}): JSON keeps only the last of them, "
                             "so what the first holds would be dropped silently; give each its own key")
        result[key] = value
        position = _skip_space(text, position)
        if text.startswith(",", position):
            position = _skip_space(text, position + 1)
        elif text.startswith("}", position):
            return result, position + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, position)


_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, position: int) -> int:
    return _SPACE.match(text, position).end()


_HUGE_NUMBER = re.compile(r"[eE][+]?0*\d{3}|\d{300}")
"""A number that may overflow a float: an exponent of 3+ digits, or 300+ digits in a row."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"invalid JSON: {name} is not a number")


class _Overflow(ValueError):
    def __init__(self, literal: str):
        super().__init__(literal)
        self.literal = literal


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Overflow(text)
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_CHECKED_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


@contextmanager
def atomic_path(target: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target``.

    Works for files and folders. On any exception the temporary path is removed and ``target``
    is left as it was.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise SegcliError("output exists; pass --overwrite to replace it", target)
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TEMPORARY_PREFIX, suffix=".tmp", dir=parent))  # short: NAME_MAX
    except OSError as exc:
        raise SegcliError(f"cannot write here: {exc.strerror}", parent) from None
    inner = tmp / target.name
    try:
        yield inner
        _replace(inner, target)
    except OSError as exc:
        raise SegcliError(f"cannot write: {exc.strerror or exc}", target) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace(source: Path, target: Path) -> None:
    if target.is_dir() and not source.is_dir():
        raise SegcliError("output is a folder, expected a file path", target)
    if target.is_dir():
        # parked inside atomic_path's own temporary folder (removed after): a fixed name beside
        # the target could be a folder of the user's, which must never be deleted
        old = source.with_name(f"{source.name}.old")
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def write_json_atomic(target: Path, data: object, overwrite: bool = False,
                      indent: int | None = None) -> None:
    """Serialise ``data`` to ``target`` atomically (no NaN allowed, UTF-8, non-ASCII kept)."""
    with atomic_path(target, overwrite) as tmp:
        _write_json(tmp, data, indent)


def _write_json(path: Path, data: object, indent: int | None) -> None:
    # json.dumps, not json.dump: only dumps uses the C encoder (about 8x faster on big files)
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, indent=indent,
                      separators=(",", ":") if indent is None else None)
    # a path that is not UTF-8 (os.fsdecode gives lone surrogates such as '\udcff') is written as
    # the JSON escape \udcff, which reads back as the same str, instead of failing the write
    with open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_files_atomic(target: Path, write: Callable[[Path], None], overwrite: bool = False) -> None:
    """Run ``write(tmp_path)`` and move the result onto ``target`` (a file or a folder)."""
    with atomic_path(target, overwrite) as tmp:
        write(tmp)


TEMPORARY_PREFIX = ".segcli-"
"""How the temporaries of segcli's atomic writes are named (``.segcli-....tmp``): recognisable,
so that cleaning up after a kill removes only those, never a hidden ``.*.tmp`` of the user's."""


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary sibling renamed into place: a kill never
    leaves a partial file under ``target``. No fsync (meant for many small outputs such as
    overlays, which a crash only makes redo); creates the parent folder.

    The temporary's name (``.segcli-HASH-PID-THREAD.tmp``) is short whatever the target's: a
    target name of up to 255 bytes (NAME_MAX) stays writable.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(os.fsencode(target.name)).hexdigest()[:16]
    tmp = target.with_name(f"{TEMPORARY_PREFIX}{digest}-{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_temporaries(folder: Path, recursive: bool = False) -> int:
    """Delete what an interrupted atomic write of segcli's left in ``folder`` (``.segcli-*.tmp``
    files and folders; with ``recursive`` in sub-folders too); returns how many. Other hidden
    files, ``.*.tmp`` ones included, are never touched. Only for folders segcli wrote and no
    other process is writing to (e.g. an output folder being resumed, under its lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    pattern = f"{TEMPORARY_PREFIX}*.tmp"
    found = list(folder.rglob(pattern) if recursive else folder.glob(pattern))
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(found)


def refuse_writing_inputs(output: Path, inputs: Iterable[Path], input_folders: Iterable[Path] = (),
                          what: str = "output") -> None:
    """Raise SegcliError when writing ``output`` could replace or delete an input.

    ``inputs``: files and folders read; ``output`` must not be one of them nor hold one (an
    output folder replaced with --overwrite would take them with it). ``input_folders``: folders
    read as a whole (a mask folder, an evaluation split); ``output`` must not be inside them
    either. Paths are compared after resolving symlinks and ``..``.
    """
    target = Path(output).resolve()
    # an output that is not there yet can be no input nor hold one (and image lists stay unresolved)
    for path in inputs if os.path.lexists(output) else ():
        source = Path(path).resolve()
        if target == source:
            named = "" if str(path) == str(output) else f" {path}"  # the message starts with output
            raise SegcliError(f"{what} would overwrite the input{named}", output)
        if source.is_relative_to(target):
            raise SegcliError(f"{what} holds the input {path}: writing it would replace it", output)
    for folder in input_folders:
        if target.is_relative_to(Path(folder).resolve()):
            raise SegcliError(f"{what} is inside the input folder {folder}: choose a path outside it", output)
