"""Writing results as JSON and CSV, the same way for every command.

- Values are made JSON-safe in one place (``json_safe``): numpy scalars and arrays become
  Python numbers and lists, objects with ``to_json()`` are asked for it, and non-finite
  floats (NaN, inf) become ``null`` so every file parses with strict JSON readers.
- Files are written atomically: a temporary file beside the target, flushed and synced,
  then ``os.replace``: a reader (or a crash) never sees half a file.
- An existing file is replaced only with ``overwrite=True``; otherwise OutputError.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from tftrt_toolkit.errors import OutputError


def json_safe(value):
    """``value`` with numpy types, objects with ``to_json()``, tuples and non-finite floats made JSON-safe."""
    if hasattr(value, "to_json") and not isinstance(value, type):
        return json_safe(value.to_json())
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def json_text(data) -> str:
    """Pretty JSON text (2-space indent, keys in the order given) ending in a newline."""
    return json.dumps(json_safe(data), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def json_line(data) -> str:
    """One-line JSON (no newline): a JSON Lines record."""
    return json.dumps(json_safe(data), allow_nan=False, ensure_ascii=False)


def csv_text(rows: Iterable[Mapping[str, object]], columns: Sequence[str]) -> str:
    """CSV text with a header of ``columns`` and one line per row (missing cells empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return buffer.getvalue()


def csv_cell(value):
    """A CSV cell: JSON-safe scalars as they are, lists/dicts as JSON text, None as empty."""
    value = json_safe(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value


def write_bytes(path: str, content: bytes, *, overwrite: bool = False) -> str:
    """Write ``content`` to ``path`` atomically; returns the absolute path.

    Raises OutputError when the file exists (without ``overwrite``), its directory does not
    exist, the path is a directory, or the write fails (permissions, disk full).
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    directory = os.path.dirname(path)
    if os.path.isdir(path):
        raise OutputError(f"{path} is a directory; pass a file name.")
    if not os.path.isdir(directory):
        raise OutputError(f"directory {directory} does not exist; create it first or choose another output.")
    if os.path.exists(path) and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it.")
    temp_path = None
    try:
        handle, temp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp_path, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(temp_path, path)
        temp_path = None
    except OSError as error:
        raise OutputError(f"could not write {path}: {error.strerror or error}") from error
    finally:
        if temp_path is not None and os.path.exists(temp_path):
            os.unlink(temp_path)
    return path


def write_text(path: str, text: str, *, overwrite: bool = False) -> str:
    """Write UTF-8 text atomically (see ``write_bytes``)."""
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def write_json(path: str, data, *, overwrite: bool = False) -> str:
    """Write ``data`` as JSON atomically (see ``json_safe`` for what is converted)."""
    return write_text(path, json_text(data), overwrite=overwrite)


def write_csv(path: str, rows: Iterable[Mapping[str, object]], columns: Sequence[str], *, overwrite: bool = False) -> str:
    """Write rows as CSV with a header atomically."""
    return write_text(path, csv_text(rows, columns), overwrite=overwrite)


def check_writable(paths: Sequence[str], *, overwrite: bool = False, make_dirs: bool = False) -> None:
    """Refuse early (before a long run) outputs that would fail later: existing files, missing dirs.

    ``make_dirs`` creates missing parent directories instead of refusing them.
    """
    for path in paths:
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        directory = os.path.dirname(path)
        if os.path.isdir(path):
            raise OutputError(f"{path} is a directory; pass a file name.")
        if os.path.exists(path) and not overwrite:
            raise OutputError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it.")
        if not os.path.isdir(directory):
            if not make_dirs:
                raise OutputError(f"directory {directory} does not exist; create it first or choose another output.")
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as error:
                raise OutputError(f"could not create directory {directory}: {error.strerror or error}") from error


def emit(text: str, output: Optional[str] = None, *, overwrite: bool = False, stream=None) -> Optional[str]:
    """Write ``text`` to ``output`` (atomically) or, when no output is given or it is '-', to ``stream`` (stdout)."""
    if output in (None, "", "-"):
        import sys

        (stream or sys.stdout).write(text)
        return None
    return write_text(output, text, overwrite=overwrite)
