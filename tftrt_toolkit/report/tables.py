"""Tables as text: aligned columns for terminals, markdown for reports and notebooks.

Both take rows of strings, the first row being the header.
"""

from __future__ import annotations

from typing import List, Sequence


def aligned_lines(rows: Sequence[Sequence[str]]) -> List[str]:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def markdown(rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table; '|' inside cells becomes '/' so columns stay whole."""
    header, body = rows[0], rows[1:]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in body]
    return "\n".join(lines)
