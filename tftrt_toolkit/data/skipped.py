"""Files in the user's data that were not used, and the one line that says so.

A file silently left out of calibration or validation changes results without anyone
knowing, so every file a data source does not use becomes a ``SkippedFile`` with its
reason; results list them (``skipped_files`` in JSON) and ``skipped_summary`` gives the
one line users read::

    skipped 3 files: 2 not images (.txt, .json), 1 unreadable (broken.jpg)
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterable, List, Sequence

# Why a file was not used; the order is the order of the summary line.
NOT_AN_IMAGE = "not an image"
UNREADABLE = "unreadable"
HIDDEN = "hidden"
SYMLINKED_DIRECTORY = "symlinked directory"
REASONS = (NOT_AN_IMAGE, UNREADABLE, HIDDEN, SYMLINKED_DIRECTORY)

# (singular, plural) of each reason in the summary line.
_REASON_WORDS = {
    NOT_AN_IMAGE: ("not an image", "not images"),
    UNREADABLE: ("unreadable", "unreadable"),
    HIDDEN: ("hidden", "hidden"),
    SYMLINKED_DIRECTORY: ("symlinked directory not followed", "symlinked directories not followed"),
}

# How many extensions or names one group of the summary line shows before "and N more".
_NAMES_SHOWN = 5
# How many files a strict-mode error lists before "and N more".
_FILES_LISTED = 20


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file (or directory) in the data that was not used: ``path``, ``reason`` (one of REASONS), ``detail``."""

    path: str
    reason: str
    detail: str = ""

    def to_json(self) -> dict:
        record = {"path": self.path, "reason": self.reason}
        if self.detail:
            record["detail"] = self.detail
        return record


def _shown(names: List[str]) -> str:
    if len(names) <= _NAMES_SHOWN:
        return ", ".join(names)
    return ", ".join(names[:_NAMES_SHOWN]) + f" and {len(names) - _NAMES_SHOWN} more"


def _group_names(reason: str, files: Sequence[SkippedFile]) -> List[str]:
    """What a summary group shows: extensions for non-images (the kind of file), file names otherwise."""
    names: List[str] = []
    for file in files:
        base = os.path.basename(file.path.rstrip("/\\"))
        name = (os.path.splitext(base)[1].lower() or base) if reason == NOT_AN_IMAGE else base
        if name not in names:
            names.append(name)
    return names


def skipped_summary(skipped: Iterable[SkippedFile]) -> str:
    """One line: ``skipped 3 files: 2 not images (.txt, .json), 1 unreadable (broken.jpg)``; "" when nothing was skipped."""
    skipped = list(skipped)
    if not skipped:
        return ""
    groups: Dict[str, List[SkippedFile]] = {}
    for file in skipped:
        groups.setdefault(file.reason, []).append(file)
    parts = []
    for reason in sorted(groups, key=lambda r: REASONS.index(r) if r in REASONS else len(REASONS)):
        files = groups[reason]
        singular, plural = _REASON_WORDS.get(reason, (reason, reason))
        parts.append(f"{len(files)} {singular if len(files) == 1 else plural} ({_shown(_group_names(reason, files))})")
    return f"skipped {len(skipped)} file{'' if len(skipped) == 1 else 's'}: " + ", ".join(parts)


def skipped_listing(skipped: Sequence[SkippedFile]) -> str:
    """Every skipped file with its reason, on one line (the first ``_FILES_LISTED``, then "and N more")."""
    entries = [f"{file.path} ({file.reason}{': ' + file.detail if file.detail else ''})" for file in skipped[:_FILES_LISTED]]
    more = f"; and {len(skipped) - _FILES_LISTED} more" if len(skipped) > _FILES_LISTED else ""
    return "; ".join(entries) + more
