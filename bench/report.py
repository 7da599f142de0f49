"""The one table (medians and ratios next to the issue's goals) and docs/BENCHMARKS.md.

A cell holds a number or the reason there is none. A goal is MET or NOT MET as measured in the
same run; nothing here asserts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

BEGIN = "<!-- bench:begin (written by make bench; edit outside these markers) -->"
END = "<!-- bench:end -->"
COLUMNS = ("corral", "docker", "podman", "raw floor")


@dataclass
class Row:
    label: str
    unit: str
    cells: dict[str, float | str] = field(default_factory=dict)
    ratio: str = ""
    goal: str = ""
    verdict: str = ""
    digits: int = 1


def fmt(value: float | str | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


def ratio_row(row: Row, num: str, den: str, goal_op: str, goal: float, text: str) -> None:
    """Fill ``ratio``/``verdict`` with ``row.cells[num] / row.cells[den]`` against a goal."""
    a, b = row.cells.get(num), row.cells.get(den)
    if not isinstance(a, float) or not isinstance(b, float) or not b or math.isnan(a) \
            or math.isnan(b):
        row.ratio, row.verdict = "—", "NOT MEASURED"
        return
    r = a / b
    row.ratio = text.format(r=r)
    met = r <= goal if goal_op == "<=" else r >= goal
    row.verdict = "MET" if met else "NOT MET"


def table(rows: list[Row]) -> str:
    """A Markdown table, aligned so it reads the same in a terminal; a reason too long for a
    cell becomes a numbered note below the table."""
    head = ["measurement (median)", *COLUMNS, "ratio", "goal", "verdict"]
    body = []
    notes: list[str] = []
    for r in rows:
        cells = []
        for c in COLUMNS:
            text = fmt(r.cells.get(c), r.digits)
            if len(text) > 14:
                if text not in notes:
                    notes.append(text)
                text = f"[{notes.index(text) + 1}]"
            cells.append(text)
        body.append([f"{r.label} ({r.unit})", *cells, r.ratio, r.goal, r.verdict])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    numeric = {1, 2, 3, 4}

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(widths[i]) if i in numeric else c.ljust(widths[i])
                                 for i, c in enumerate(cells)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in numeric else "-" * (w + 2)
                         for i, w in enumerate(widths)) + "|"
    lines = [line(head), sep, *(line(b) for b in body)]
    if notes:
        lines.append("")
        lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def kv_table(title: str, items: list[tuple[str, str]]) -> str:
    width = max([len(k) for k, _ in items] + [len(title)])
    lines = [f"| {title.ljust(width)} | value |", f"|{'-' * (width + 2)}|------:|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in items]
    return "\n".join(lines)


def write_docs(path: Path, generated: str) -> None:
    """Put ``generated`` between the markers of ``path``; what is outside them is kept."""
    block = f"{BEGIN}\n{generated.rstrip()}\n{END}"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text,
                          count=1, flags=re.S)
            path.write_text(text)
            return
        path.write_text(text.rstrip() + "\n\n" + block + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Benchmarks\n\n`make bench` measures corral side by side with Docker, "
                    "Podman and the raw floor (ip + runc), in one run, and rewrites the block "
                    "below.\n\n" + block + "\n\n## Where the time goes\n\n(to be written)\n")
