"""What every diagram draws from: the machine's table as views (states, edges, the start
pipeline), a container's history laid on them, colours, formats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from transitions.extensions.diagrams import GraphMachine

from states import DEAD, REFUSALS, STARTING, STATES, TRANSITIONS

from ..errors import InvalidParameter
from ..start.netsteps import SUB_STEP_NAMES
from ..start.steps import STEP_NAMES

FORMATS = ("mermaid", "dot", "svg", "png")
TEXT_FORMATS = ("mermaid", "dot")

CLUSTER = "cluster_" + STARTING
FONT = "Helvetica"
PIPELINE_ROW = 5  # steps per row: the ten steps read as two lines of text

# (fill, border). Current, visited and failed differ in hue and in border weight, so they stay
# apart in grey-scale and for the colour-blind; the legend names them.
COLORS: dict[str, tuple[str, str]] = {
    "default": ("white", "#555555"),
    "current": ("#ffd966", "#b45f06"),
    "visited": ("#cfe2f3", "#3d85c6"),
    "failed": ("#ea9999", "#cc0000"),
    "done": ("#d9ead3", "#6aa84f"),
    "undone": ("#eeeeee", "#888888"),
    "undo_failed": ("#f9cb9c", "#e69138"),
}
TAKEN_EDGE = "#3d85c6"
ERROR_EDGE = "#cc0000"
IDLE_EDGE = "#a0a0a0"


@dataclass
class _EdgeView:
    """One drawn transition: one trigger from one source, so each can carry its own count."""

    trigger: str
    source: str
    dest: str
    note: str
    count: int = 0
    last: float | None = None
    error: str = ""  # the last error this transition carried


@dataclass
class _StepView:
    name: str
    style: str = "default"  # a key of COLORS
    duration: float | None = None
    error: str = ""


@dataclass
class _View:
    """Everything that differs between the machine and one container's history."""

    title: str
    edges: list[_EdgeView]
    subtitle: str = ""
    node_styles: dict[str, str] = field(default_factory=dict)
    steps: list[_StepView] = field(default_factory=list)
    history: bool = False
    error_sub_step: str = ""


def _table_edges() -> list[_EdgeView]:
    return [_EdgeView(t.trigger, s, t.dest, t.note) for t in TRANSITIONS for s in t.sources]


def _machine_view() -> _View:
    return _View(title="corral: the container lifecycle", edges=_table_edges(),
                 subtitle="every state and transition of states.TRANSITIONS; the start plan "
                          "runs inside starting",
                 steps=[_StepView(n) for n in STEP_NAMES])


def _container_view(info: Mapping[str, Any]) -> _View:
    state = info.get("State") or {}
    current = state.get("Status", "")
    history = list(info.get("History") or [])
    edges = _table_edges()
    by_key = {(e.trigger, e.source): e for e in edges}
    visited = {current}
    for h in history:
        visited.update((h.get("source", ""), h.get("dest", "")))
        edge = by_key.get((h.get("trigger", ""), h.get("source", "")))
        if edge is None:  # a trigger the table no longer has: nothing to draw it on
            continue
        edge.count += 1
        edge.last = max(edge.last or 0.0, float(h.get("time") or 0.0))
        edge.error = h.get("error") or edge.error
    node_styles = {s: "visited" for s in visited if s in STATES}
    if current in STATES:
        node_styles[current] = "current"

    records = {r.get("name"): r for r in info.get("StartSteps") or []}
    error_step = state.get("ErrorStep") or ""
    steps = []
    for name in STEP_NAMES:
        view = _StepView(name)
        rec = records.get(name)
        if rec is not None:
            # the runner's outcomes: done, failed, undone, undo-failed
            outcome = str(rec.get("outcome", "")).replace("-", "_")
            view.style = outcome if outcome in COLORS else "done"
            view.duration = rec.get("duration")
            view.error = rec.get("error", "")
        if name == error_step:
            view.style = "failed"
            view.error = view.error or state.get("Error", "")
        steps.append(view)

    # the network step runs sub-steps of its own; its error names the one that failed
    # ("network: veth: ...")
    sub = ""
    if error_step == "network":
        head = (state.get("Error") or "").removeprefix("network: ").split(":", 1)[0].strip()
        sub = head if head in SUB_STEP_NAMES else ""

    name = str(info.get("Name", "")).lstrip("/")
    cid = str(info.get("Id", ""))[:12]
    facts = [f"state {current or 'unknown'}"]
    if current == DEAD:
        facts.append(f"exit code {state.get('ExitCode', 0)}")
    facts += [f"restarts {info.get('RestartCount', 0)}", "times UTC"]
    if state.get("Error"):
        facts.append(f"error: {_short(state['Error'], 60)}")
    return _View(title=f"container {name} ({cid})" if name else f"container {cid}",
                 subtitle=" · ".join(facts), edges=edges, node_styles=node_styles,
                 steps=steps, history=True, error_sub_step=sub)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _parse_time(stamp: Any) -> float | None:
    if isinstance(stamp, int | float):
        return float(stamp)
    if not stamp or str(stamp).startswith("0001-"):
        return None
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_duration(seconds: float | None) -> str:
    """A short human duration: ``0.4ms``, ``21ms``, ``3.2s``, ``5m03s``, ``2h04m``; ``-`` when
    unknown."""
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _short(text: str, width: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _edge_text(e: _EdgeView, view: _View) -> str:
    if view.history and e.count:
        return f"{e.trigger} ×{e.count}, last {_clock(e.last or 0.0)}"
    return e.trigger


def _refusal_groups() -> list[tuple[str, str, list[str], str]]:
    """(trigger, message, states, kind) for each distinct answer, in the table's order."""
    groups: dict[tuple[str, str], tuple[list[str], str]] = {}
    for r in REFUSALS:
        # the table keeps Docker's ``{name}`` placeholder; a diagram has no container to name
        message = r.message.replace(" {name}", "")
        kind = re.sub(r"(?<!^)(?=[A-Z])", " ", r.error.__name__.removeprefix("Transition"))
        groups.setdefault((r.trigger, message), ([], kind.lower()))[0].append(r.state)
    return [(t, m, states, kind) for (t, m), (states, kind) in groups.items()]


class _Model:
    """A model with no callbacks: a diagram needs the table's shape, never its effects."""


def _transitions_graph(view: _View, engine: str, labels: Mapping[tuple[str, str], str],
                       node_styles: dict[str, dict[str, str]],
                       edge_styles: dict[str, dict[str, str]], rankdir: str) -> Any:
    """transitions' graph of the table (a ``graphviz.Digraph`` or a Mermaid mock), styled."""
    model = _Model()
    machine = GraphMachine(
        model=model, states=list(STATES), initial=STATES[0],
        transitions=[{"trigger": e.trigger, "source": e.source, "dest": e.dest,
                      "label": labels[(e.trigger, e.source)]} for e in view.edges],
        auto_transitions=False, title=view.title, graph_engine=engine)
    # per-instance styles: the class attributes are shared by every GraphMachine in the process
    machine.style_attributes = {"node": node_styles, "edge": edge_styles,
                                "graph": {"default": {}}}
    machine.machine_attributes = {"directed": "true", "strict": "false", "rankdir": rankdir}
    graph = machine.model_graphs[id(model)]
    # transitions marks the initial state active; in these pictures the view decides
    graph.reset_styling()
    for state in STATES:
        graph.set_node_style(state, view.node_styles.get(state, "default"))
    for e in view.edges:
        graph.custom_styles["edge"][e.source][e.dest] = _edge_style(view, e)
    return model.get_graph()


def _edge_style(view: _View, e: _EdgeView) -> str:
    if not view.history:
        kind = "machine"
    elif not e.count:
        kind = "idle"
    else:
        kind = "error" if e.error else "taken"
    # ``starting`` is drawn as the box of its start plan (a composite state, in UML terms):
    # its transitions end and begin at the box's border
    if e.source == STARTING and e.dest != STARTING:
        return kind + "-out"
    if e.dest == STARTING and e.source != STARTING:
        return kind + "-in"
    return kind


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InvalidParameter(f"unknown diagram format {fmt!r}: use one of "
                               f"{', '.join(FORMATS)}")
