"""Lifecycle diagrams, drawn from the transition table with transitions' diagram support.

Three pictures, each as Graphviz (``dot`` source, ``svg``, ``png``) or Mermaid text:

- the machine: every state and transition of ``states.TRANSITIONS``, the ten start steps as a
  pipeline inside ``starting`` (a failure leaves it for ``dead``), and the refusals of
  ``states.REFUSALS`` as a table;
- one container's history over the same machine: its current and visited states, each
  transition it took with a count and the time it last happened, the steps of its last start
  (the failed one in red);
- a deployment: services coloured by state, ``depends_on`` edges labelled with conditions.

``transitions.extensions.diagrams.GraphMachine`` lays down the states and transitions, so a
picture cannot drift from the machine the engine runs; this module adds only what the table
does not know: the start pipeline, the styles of a history, the legends. The ``*_graph``
functions return ``graphviz.Digraph`` objects an embedder can render or save itself; the
``*_diagram`` functions return text (``mermaid``, ``dot``) or bytes (``svg``, ``png``).
Rendering needs the ``dot`` program (Debian's ``graphviz``); Mermaid and ``dot`` source do not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from states import STATES

from .deployment import deployment_diagram, deployment_graph
from .dot import _build_graphviz, container_graph, machine_graph, render
from .mermaid import _build_mermaid
from .model import (
    FORMATS,
    _check_format,
    _container_view,
    _iso,
    _machine_view,
    _parse_time,
    format_duration,
)

# -- history --------------------------------------------------------------------------------


def history_rows(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The transitions of ``info["History"]``: time (ISO 8601, UTC), from, to, trigger,
    duration (seconds spent in ``from`` before this transition, ``None`` when unknown) and
    error, oldest first."""
    rows = []
    history = list(info.get("History") or [])
    # the first entry left ``created`` only when the bounded history kept it; otherwise the
    # time entered is lost with the dropped entries
    previous = (_parse_time(info.get("Created"))
                if history and history[0].get("source") == STATES[0] else None)
    for h in history:
        ts = float(h.get("time") or 0.0)
        rows.append({"time": _iso(ts), "from": h.get("source", ""), "to": h.get("dest", ""),
                     "trigger": h.get("trigger", ""),
                     "duration": None if previous is None else max(0.0, ts - previous),
                     "error": h.get("error", "") or ""})
        previous = ts
    return rows


def format_history_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``rows`` of ``history_rows`` as an aligned text table."""
    headers = ("TIME", "FROM", "TO", "TRIGGER", "DURATION", "ERROR")
    cells = [(r["time"], r["from"], r["to"], r["trigger"], format_duration(r["duration"]),
              " ".join(str(r["error"]).split())) for r in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    lines = []
    for c in [headers, *cells]:
        lines.append("   ".join(v.ljust(widths[i]) for i, v in enumerate(c)).rstrip())
    return "\n".join(lines) + "\n"


# -- rendering ------------------------------------------------------------------------------


def machine_diagram(fmt: str = "mermaid") -> str | bytes:
    """The lifecycle machine in ``fmt``: mermaid and dot as text, svg and png as bytes."""
    _check_format(fmt)
    view = _machine_view()
    if fmt == "mermaid":
        return _build_mermaid(view)
    return render(_build_graphviz(view), fmt)


def container_diagram(info: Mapping[str, Any], fmt: str = "mermaid") -> str | bytes:
    """One container's history (its ``Engine.inspect`` dict) over the machine, in ``fmt``."""
    _check_format(fmt)
    view = _container_view(info)
    if fmt == "mermaid":
        return _build_mermaid(view)
    return render(_build_graphviz(view), fmt)


__all__ = [
    "FORMATS", "container_diagram", "container_graph", "deployment_diagram",
    "deployment_graph", "format_duration", "format_history_table", "history_rows",
    "machine_diagram", "machine_graph", "render",
]
