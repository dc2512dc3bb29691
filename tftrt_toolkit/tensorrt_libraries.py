"""Where TensorRT's libraries are, and why TensorFlow could not load them.

TensorFlow's pip wheel (2.17) *is* a TensorRT build: it dlopens ``libnvinfer.so.<V>`` and
``libnvinfer_plugin.so.<V>`` by those exact names, V being the TensorRT version it was
linked against (8.6.1), through the dynamic loader's search (LD_LIBRARY_PATH, the ldconfig
cache, the default directories). When either is missing TF logs "TF-TRT Warning: Could not
find TensorRT" and ``is_tensorrt_enabled()`` is False — the most common TF-TRT support
request (tensorflow/tensorflow issues #61468, #64809, #68335).

The usual fix is NVIDIA's pip package ``tensorrt`` (its ``tensorrt_libs`` folder), or the
libraries of a TensorRT tarball, on LD_LIBRARY_PATH. This module finds such folders in the
Python environment and on the usual paths, and says what is missing and what to do. It
imports no TensorFlow, so it can run before TF looks (the loader reads LD_LIBRARY_PATH
only when a process starts: a process that wants them must be started with the path set,
see ``environment_for``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import os
import site
import sys
from typing import Dict, List, Optional, Sequence, Tuple

LIBRARY_STEMS = ("libnvinfer", "libnvinfer_plugin")
# Folders pip packages install shared libraries into: NVIDIA's ``tensorrt`` / ``tensorrt-libs``
# wheels put them in ``tensorrt_libs``, the CUDA wheels in ``nvidia/<name>/lib``.
_PACKAGE_FOLDERS = ("tensorrt_libs", "tensorrt", os.path.join("nvidia", "*", "lib"))
_SYSTEM_FOLDERS = ("/usr/lib/x86_64-linux-gnu", "/usr/local/tensorrt/lib", "/opt/tensorrt/lib", "/usr/local/cuda/lib64")


def wanted_names(version: str) -> Tuple[str, ...]:
    """The file names TF dlopens for TensorRT ``version`` (e.g. '8.6.1' -> libnvinfer.so.8.6.1, ...)."""
    return tuple(f"{stem}.so.{version}" for stem in LIBRARY_STEMS)


@dataclasses.dataclass(frozen=True)
class LibrarySearch:
    """What the search found for one TensorRT version.

    ``missing``: wanted names the dynamic loader cannot open in this process;
    ``found``: {wanted name: path} in the folders searched (present, maybe not on the loader's path);
    ``same_major``: {wanted name: path} of a file of the same major version under another name
    (``libnvinfer.so.8`` where TF wants ``libnvinfer.so.8.6.1``: a symlink fixes it);
    ``searched``: the folders looked in.
    """

    version: str
    missing: Tuple[str, ...]
    found: Dict[str, str]
    same_major: Dict[str, str]
    searched: Tuple[str, ...]

    @property
    def loadable(self) -> bool:
        return not self.missing

    @property
    def folders_to_add(self) -> Tuple[str, ...]:
        """Folders holding every missing library under its wanted name: put these on LD_LIBRARY_PATH."""
        if not self.missing or any(name not in self.found for name in self.missing):
            return ()
        return tuple(dict.fromkeys(os.path.dirname(self.found[name]) for name in self.missing))

    def fix(self) -> str:
        """One or two sentences: what to do about the missing libraries."""
        if not self.missing:
            return "nothing to do: the TensorRT libraries load"
        folders = self.folders_to_add
        if folders:
            return (f"they are installed in {', '.join(folders)} but not on the loader's path: "
                    f"export LD_LIBRARY_PATH={os.pathsep.join(folders)}:$LD_LIBRARY_PATH (tftrt restarts itself "
                    "with it when it finds them)")
        if self.same_major:
            links = "; ".join(f"ln -s {path} {os.path.join(os.path.dirname(path), name)}"
                              for name, path in self.same_major.items())
            return (f"found other file names of TensorRT {self.version.split('.')[0]} ({', '.join(self.same_major.values())}); "
                    f"TF wants {', '.join(self.missing)}: {links}, then put that folder on LD_LIBRARY_PATH")
        return (f"install TensorRT {self.version} on a machine with an NVIDIA GPU: "
                f"pip install 'tensorflow[and-cuda]==2.17.1' 'tensorrt=={self.version}' "
                f"(or NVIDIA's TensorRT {self.version} tarball), then put the folder holding "
                f"{self.missing[0]} (pip: site-packages/tensorrt_libs) on LD_LIBRARY_PATH")

    def to_json(self) -> dict:
        return {"version": self.version, "missing": list(self.missing), "found": self.found,
                "same_major": self.same_major, "searched": list(self.searched), "fix": self.fix()}


def default_search_folders() -> List[str]:
    """Folders to look in: pip packages' library folders in every site-packages, LD_LIBRARY_PATH, system folders."""
    roots: List[str] = []
    try:
        roots += site.getsitepackages()
    except AttributeError:  # some virtualenv builds have no getsitepackages
        pass
    try:
        roots.append(site.getusersitepackages())
    except AttributeError:
        pass
    roots += [path for path in sys.path if path.endswith("site-packages")]
    folders: List[str] = []
    for root in dict.fromkeys(roots):
        for pattern in _PACKAGE_FOLDERS:
            folders += sorted(glob.glob(os.path.join(root, pattern)))
    folders += [path for path in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if path]
    folders += list(_SYSTEM_FOLDERS)
    return [folder for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


def can_load(name: str) -> bool:
    """Whether the dynamic loader opens ``name`` (a bare file name) in this process, as TF's dlopen would."""
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def search(version: Optional[str], folders: Optional[Sequence[str]] = None, *, loader=can_load) -> Optional[LibrarySearch]:
    """Look for TensorRT ``version``'s libraries; None when ``version`` is None (TF not linked with TensorRT).

    ``folders`` defaults to ``default_search_folders()``; ``loader(name) -> bool`` says
    whether the dynamic loader opens a name (injectable for tests with fake folder trees).
    """
    if not version:
        return None
    folders = list(default_search_folders() if folders is None else folders)
    names = wanted_names(version)
    missing = tuple(name for name in names if not loader(name))
    found: Dict[str, str] = {}
    same_major: Dict[str, str] = {}
    major = version.split(".")[0]
    for name in names:
        stem = name.split(".so.")[0]
        for folder in folders:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                found.setdefault(name, path)
            other = os.path.join(folder, f"{stem}.so.{major}")
            if name not in found and os.path.exists(other):
                same_major.setdefault(name, other)
    same_major = {name: path for name, path in same_major.items() if name not in found and name in missing}
    return LibrarySearch(version=version, missing=missing, found=found, same_major=same_major, searched=tuple(folders))


# Set in a process tftrt restarted with LD_LIBRARY_PATH extended, so it never restarts twice.
RESTARTED_MARKER = "TFTRT_TOOLKIT_TENSORRT_PATH_ADDED"


def environment_for(found: LibrarySearch, environ: Optional[Dict[str, str]] = None) -> Optional[Dict[str, str]]:
    """The environment a new process needs to load the found libraries; None when there is nothing to add.

    The loader reads LD_LIBRARY_PATH once, at process start, so the libraries' folders help
    only a process started with them (``tftrt`` re-executes itself with this environment).
    """
    environ = dict(os.environ if environ is None else environ)
    folders = found.folders_to_add
    if not folders or environ.get(RESTARTED_MARKER):
        return None
    current = [path for path in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if path]
    environ["LD_LIBRARY_PATH"] = os.pathsep.join(list(folders) + [p for p in current if p not in folders])
    environ[RESTARTED_MARKER] = os.pathsep.join(folders)
    return environ
