"""Saving converted models safely, and reading them back.

Guarantees:
- the output appears whole or not at all: everything is written into a temporary directory
  beside the target and renamed into place (with ``overwrite``, exchanged atomically on Linux);
- the input model is never written to, and an output inside (or equal to, or containing) the
  input is refused before any work;
- an existing output is an error unless ``overwrite=True``; two writers racing for the same
  output never mix: one wins, the other fails cleanly;
- TF Serving layout: with ``version`` the model goes to ``BASE/N`` and that version directory
  appears atomically, so a watching server never loads a partial model;
- what was done is recorded in ``assets.extra/tftrt_toolkit.json`` inside the output.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime
import errno
import json
import os
import shutil
import uuid
from typing import Iterator, Optional, Union

from tftrt_toolkit.errors import OutputError

METADATA_RELATIVE_PATH = os.path.join("assets.extra", "tftrt_toolkit.json")
_TEMP_MARKER = ".tftrt-tmp-"


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _is_within(path: str, parent: str) -> bool:
    path, parent = _real(path), _real(parent)
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def next_version(base_path: str) -> int:
    """The next TF Serving version number under ``base_path`` (1 when there is none)."""
    if not os.path.isdir(base_path):
        return 1
    versions = [int(name) for name in os.listdir(base_path) if name.isdigit()]
    return max(versions, default=0) + 1


def resolve_output(output: str, version: Optional[Union[int, str]] = None) -> str:
    """The directory the SavedModel will occupy: ``output`` itself, or ``output/N`` for serving layouts."""
    if not output:
        raise OutputError("no output given; pass --output=DIR.")
    output = os.path.abspath(os.path.expanduser(output))
    if version is None or version == "":
        return output
    if str(version) == "auto":
        return os.path.join(output, str(next_version(output)))
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise OutputError(f"--version={version!r} is not valid; use a positive integer or 'auto'.") from None
    if number <= 0:
        raise OutputError(f"--version={version} is not valid; TF Serving versions are positive integers.")
    return os.path.join(output, str(number))


def check_output(target: str, input_paths, overwrite: bool) -> None:
    """Refuse outputs that would touch the input or silently replace something; before any work."""
    for input_path in input_paths:
        if not input_path or not os.path.exists(input_path):
            continue
        if _real(target) == _real(input_path):
            raise OutputError(f"output {target!r} is the input model; choose a new directory (the input is never modified).")
        if _is_within(target, input_path):
            raise OutputError(f"output {target!r} is inside the input model {input_path!r}; choose a directory outside it.")
        if _is_within(input_path, target):
            raise OutputError(f"output {target!r} contains the input model {input_path!r}; writing it would destroy the input.")
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise OutputError(f"output {target!r} exists and is a file; choose another path.")
        if os.listdir(target) and not overwrite:
            raise OutputError(f"output {target!r} already exists; pass --overwrite to replace it, or choose another path.")
    parent = os.path.dirname(target) or "."
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    if not os.path.isdir(probe):
        raise OutputError(f"cannot create {target!r}: {probe!r} is a file, not a directory.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {probe!r} (permission denied); choose a writable --output.")


def _exchange(path_a: str, path_b: str) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False when unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = libc.renameat2(at_fdcwd, os.fsencode(path_a), at_fdcwd, os.fsencode(path_b), rename_exchange)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM):  # filesystem or kernel without the flag
        return False
    raise OSError(err, os.strerror(err), path_b)


class StagedOutput:
    """A temporary directory beside the target that becomes the target on ``commit()``."""

    def __init__(self, target: str, overwrite: bool):
        self.target = target
        self.overwrite = overwrite
        parent = os.path.dirname(target)
        self._created_parent = None
        if not os.path.isdir(parent):
            # Remember the first directory we create, so a failure leaves no trace.
            probe = parent
            while not os.path.exists(os.path.dirname(probe)):
                probe = os.path.dirname(probe)
            self._created_parent = probe
            try:
                os.makedirs(parent)
            except OSError as error:
                raise OutputError(f"cannot create {parent!r}: {error.strerror}; choose a writable --output.") from None
        self.path = os.path.join(parent, f".{os.path.basename(target)}{_TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.mkdir(self.path)
        except OSError as error:
            raise OutputError(f"cannot write to {parent!r}: {error.strerror}; choose a writable --output.") from None
        self.committed = False

    def commit(self) -> None:
        """Move the finished SavedModel into place; OutputError when someone else got there first."""
        target = self.target
        if os.path.isdir(target) and os.listdir(target):
            if not self.overwrite:
                raise OutputError(f"output {target!r} appeared while converting (another process?); nothing was written.")
            if _exchange(self.path, target):
                shutil.rmtree(self.path, ignore_errors=True)  # now holds the old model
                self.committed = True
                return
            # No atomic exchange here: move the old one aside, then the new one in (a short gap, never a mix).
            aside = self.path + "-old"
            os.rename(target, aside)
            os.rename(self.path, target)
            shutil.rmtree(aside, ignore_errors=True)
            self.committed = True
            return
        try:
            os.rename(self.path, target)  # replaces only a missing or empty directory
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise OutputError(f"output {target!r} appeared while converting (another process?); nothing was written.") from None
            raise
        self.committed = True

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._created_parent and os.path.isdir(self._created_parent):
            with contextlib.suppress(OSError):
                # Only removes directories we created and that stayed empty.
                for root, dirs, files in os.walk(self._created_parent, topdown=False):
                    if not files:
                        os.rmdir(root)


def _write_failure(error: BaseException) -> Optional[str]:
    """Classify a failed write: "disk full", "permission", or None (Python's and TensorFlow's errors).

    tf.saved_model.save writes through TensorFlow's C++ file system, which reports a full disk
    as ResourceExhaustedError("...; No space left on device"), not as OSError(ENOSPC).
    """
    if isinstance(error, OSError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return "disk full"
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "permission"
        return None
    if type(error).__module__.startswith("tensorflow") and (
            os.strerror(errno.ENOSPC) in str(error) or os.strerror(errno.EDQUOT) in str(error)):
        return "disk full"
    return None


@contextlib.contextmanager
def staged_output(target: str, overwrite: bool = False) -> Iterator[StagedOutput]:
    """Write into ``stage.path``, call ``stage.commit()``; any exception (Ctrl-C included) discards it."""
    stage = StagedOutput(target, overwrite)
    try:
        yield stage
    except Exception as error:
        stage.discard()
        failure = _write_failure(error)
        if failure == "disk full":
            raise OutputError(f"disk full while writing {target!r}; free space or choose another --output. Nothing was written.") from error
        if failure == "permission":
            raise OutputError(f"cannot write {target!r} ({error.strerror}); choose a writable --output. Nothing was written.") from error
        raise
    except BaseException:
        stage.discard()
        raise
    else:
        if not stage.committed:
            stage.discard()


def _json_default(value):
    if hasattr(value, "to_json"):
        return value.to_json()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_metadata(saved_model_dir: str, metadata: dict) -> str:
    """Write the run's metadata into the SavedModel (assets.extra is copied by tools, ignored by loaders)."""
    path = os.path.join(saved_model_dir, METADATA_RELATIVE_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    metadata = dict(metadata)
    metadata.setdefault("created_at", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle, indent=2, sort_keys=True, default=_json_default)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def serving_threads(metadata: Optional[dict]) -> Optional[dict]:
    """How to serve a model: tune's choice (its ``chosen_by.serving``), else the threads its conversion
    needs (``runtime.serving_threads``: a model split into token branches), else None.

    Keys: ``objective`` ("latency"/"throughput"), ``intra_op_threads`` and ``inter_op_threads``
    (0 = TF's choice), ``reason``; tune's choice also ``concurrency`` (requests in flight) and ``batch_size``.
    """
    serving = ((metadata or {}).get("chosen_by") or {}).get("serving")
    if not isinstance(serving, dict):
        serving = ((metadata or {}).get("runtime") or {}).get("serving_threads")
    return serving if isinstance(serving, dict) else None


def read_metadata(saved_model_dir: str) -> Optional[dict]:
    """The toolkit metadata of a converted model, or None for models the toolkit did not write."""
    path = os.path.join(saved_model_dir, METADATA_RELATIVE_PATH)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)

