"""A one-line progress bar on stderr: no dependency, silent when stderr is not a terminal."""

from __future__ import annotations

import sys
from typing import Optional, TextIO


class ProgressBar:
    """Shows ``label [#####.....] done/total note`` redrawn in place.

    ``enabled`` defaults to whether ``stream`` (stderr) is a terminal, so logs and CI
    output stay clean. Use as a context manager or call ``close()`` to end the line.
    """

    width = 30

    def __init__(self, total: int, label: str, *, stream: Optional[TextIO] = None, enabled: Optional[bool] = None):
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self.stream) if enabled is None else enabled
        self._drawn = False

    def update(self, done: int, note: str = "") -> None:
        """Redraw with ``done`` of ``total`` finished and an optional note (e.g. samples used)."""
        if not self.enabled:
            return
        filled = min(self.width, self.width * done // self.total)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {note}".rstrip())
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
