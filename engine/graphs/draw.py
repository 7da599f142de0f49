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

import html
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import graphviz
from transitions.extensions.diagrams import GraphMachine

from states import DEAD, REFUSALS, REMOVING, STARTING, STATES, TRANSITIONS

from ..errors import InvalidParameter, SystemFailure
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

# A service's state, in corral's, Docker's and Compose's words; others are drawn as unknown.
SERVICE_COLORS: dict[str, tuple[str, str]] = {
    "running": ("#b6d7a8", "#38761d"),
    "healthy": ("#b6d7a8", "#38761d"),
    "starting": ("#ffe599", "#bf9000"),
    "created": ("#cfe2f3", "#3d85c6"),
    "paused": ("#d9d2e9", "#674ea7"),
    "exited": ("#dddddd", "#666666"),
    "dead": ("#dddddd", "#666666"),
    "failed": ("#ea9999", "#cc0000"),
    "unhealthy": ("#ea9999", "#cc0000"),
    "removing": ("#f9cb9c", "#e69138"),
    "not created": ("white", "#999999"),
    "unknown": ("white", "#999999"),
}


# -- what a picture shows -------------------------------------------------------------------


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


# -- text helpers ---------------------------------------------------------------------------


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


# -- transitions' machine -------------------------------------------------------------------


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


# -- Graphviz -------------------------------------------------------------------------------


def _gv_node_styles() -> dict[str, dict[str, str]]:
    styles = {}
    for key, (fill, border) in COLORS.items():
        styles[key] = {"style": "rounded,filled", "shape": "box", "fillcolor": fill,
                       "color": border, "penwidth": "1.2", "peripheries": "1",
                       "fontname": FONT, "fontsize": "14", "margin": "0.18,0.06"}
    styles["current"].update(penwidth="2.5", peripheries="2", fontname=FONT + " Bold")
    styles["visited"].update(penwidth="2")
    styles["failed"].update(penwidth="2.5")
    return styles


def _gv_edge_styles() -> dict[str, dict[str, str]]:
    base = {"fontname": FONT, "fontsize": "11", "arrowsize": "0.8"}
    styles = {
        "machine": {**base, "color": "#444444", "fontcolor": "#222222"},
        "idle": {**base, "color": IDLE_EDGE, "fontcolor": "#888888", "style": "dashed"},
        "taken": {**base, "color": TAKEN_EDGE, "fontcolor": "#1c4587", "penwidth": "2.2"},
        "error": {**base, "color": ERROR_EDGE, "fontcolor": "#990000", "penwidth": "2.2"},
    }
    for kind, style in list(styles.items()):
        styles[f"{kind}-out"] = {**style, "ltail": CLUSTER}
        styles[f"{kind}-in"] = {**style, "lhead": CLUSTER}
    return styles


def _gv_edge_label(e: _EdgeView, view: _View) -> str:
    if view.history:
        if not e.count:
            return f"<{html.escape(e.trigger)}>"
        # two short lines collide less with the labels around them than one long one
        lines = [f"<b>{html.escape(e.trigger)} ×{e.count}</b>",
                 f'<font point-size="10">last {_clock(e.last or 0.0)}</font>']
        if e.error:
            lines.append(f'<font point-size="9">{html.escape(_short(e.error, 36))}</font>')
        # the spaces keep the text off the line it labels
        return "<" + "<br/>".join(f"&nbsp;{line}&nbsp;" for line in lines) + ">"
    text = html.escape(_edge_text(e, view))
    return (f'<&nbsp;<b>{text}</b>&nbsp;<br/>&nbsp;<font point-size="9" color="#666666">'
            f"{html.escape(e.note)}</font>&nbsp;>")


def _build_graphviz(view: _View) -> graphviz.Digraph:
    labels = {(e.trigger, e.source): _gv_edge_label(e, view) for e in view.edges}
    g: graphviz.Digraph = _transitions_graph(view, "graphviz", labels, _gv_node_styles(),
                                             _gv_edge_styles(), "TB")
    g.graph_attr.update(compound="true", newrank="true", nodesep="0.6", ranksep="0.3",
                        fontname=FONT, labelloc="t", labeljust="l", label=_gv_title(view),
                        pad="0.3")
    # transitions labels a node "name\l" (left-aligned); centred names read better in a box
    for state in STATES:
        g.node(state, label=state, id=f"state_{state}")
    _gv_pipeline(g, view)
    # the states ``starting`` leads to are drawn below the plan, so its edges go down
    last = f"step_{view.steps[-1].name}"
    for dest in dict.fromkeys(e.dest for e in view.edges if e.source == STARTING):
        g.edge(last, dest, style="invis")
    # initial and final pseudo-states, as in UML (and in transitions' Mermaid output)
    g.node("initial", label="", shape="circle", style="filled", fillcolor="black",
           width="0.18", peripheries="1")
    g.edge("initial", STATES[0], color="#444444", arrowsize="0.7")
    g.node("gone", label="", shape="doublecircle", style="filled", fillcolor="black",
           width="0.12", peripheries="2")
    g.edge(REMOVING, "gone", color="#444444", arrowsize="0.7", style="dotted",
           xlabel="deleted", fontname=FONT, fontsize="9")
    # a separate component would be placed beside the graph: tie the notes below it
    notes = "legend" if view.history else "refusals"
    g.node(notes, label=_gv_legend() if view.history else _gv_refusals(), shape="plain",
           style="", peripheries="0", fontname=FONT, fontsize="10", id=notes)
    g.edge("gone", notes, style="invis")
    return g


def _gv_title(view: _View) -> str:
    sub = (f'<br/><font point-size="11" color="#555555">{html.escape(view.subtitle)}</font>'
           if view.subtitle else "")
    return f'<<font point-size="18"><b>{html.escape(view.title)}</b></font>{sub}>'


def _gv_step_label(index: int, step: _StepView, view: _View) -> str:
    parts = [f"<b>{index}. {html.escape(step.name)}</b>"]
    if step.name == "network":
        subs = [f'<font color="#cc0000"><b>{html.escape(s)}</b></font>'
                if s == view.error_sub_step else html.escape(s) for s in SUB_STEP_NAMES]
        for line in (subs[:3], subs[3:]):
            parts.append(f'<font point-size="9">{" · ".join(line)}</font>')
    facts = []
    if step.duration is not None:
        facts.append(format_duration(step.duration))
    if step.style in ("undone", "undo_failed"):
        facts.append(step.style.replace("_", " "))
    if facts:
        parts.append(f'<font point-size="10">{", ".join(facts)}</font>')
    if step.style == "failed":
        parts.append('<font point-size="10" color="#990000"><b>FAILED</b></font>')
    return "<" + "<br/>".join(parts) + ">"


def _gv_pipeline(g: graphviz.Digraph, view: _View) -> None:
    styles = _gv_node_styles()
    with g.subgraph(name=CLUSTER) as c:
        c.attr(label=_gv_pipeline_label(),
               style="rounded,filled", fillcolor="#f5f5f5", color="#999999",
               fontname=FONT, fontsize="11", labeljust="l", labelloc="b", id=CLUSTER)
        # ``starting`` heads the box on a rank of its own, with no edge into the rows: dot
        # then puts it on the side of the states it links to, so its transitions leave the
        # box at once and keep their labels outside it
        c.node(STARTING)
        for r in range(0, len(view.steps), PIPELINE_ROW):
            with c.subgraph() as row:
                row.attr(rank="same")
                if r == 0:
                    row.node("plan_begin", label="", shape="circle", style="filled",
                             fillcolor="#777777", color="#777777", width="0.14")
                for i, step in enumerate(view.steps[r:r + PIPELINE_ROW], r + 1):
                    style = dict(styles[step.style])
                    # square corners tell a step from a state
                    style.update(fontsize="11", style="filled,dashed"
                                 if step.style == "undone" else "filled")
                    tooltip = f"{i}. {step.name}" + (f": {step.error}" if step.error else "")
                    row.node(f"step_{step.name}", label=_gv_step_label(i, step, view),
                             id=f"step_{step.name}", tooltip=tooltip, **style)
        c.edge(STARTING, "plan_begin", style="invis")
        chain = ["plan_begin", *(f"step_{s.name}" for s in view.steps)]
        for a, b in zip(chain, chain[1:], strict=False):
            c.edge(a, b, color="#777777", arrowsize="0.6")


def _gv_pipeline_label() -> str:
    return ("<<b>start plan</b>: the steps in order; when one fails, it and every step done "
            "before it are undone, in reverse, and the container is <b>dead</b>>")


def _gv_refusals() -> str:
    rows = ['<tr><td colspan="3" align="left"><b>refused (a typed error; the state does not '
            'change)</b></td></tr>',
            '<tr><td align="left"><b>trigger</b></td><td align="left"><b>in</b></td>'
            '<td align="left"><b>answer</b></td></tr>']
    for trigger, message, states, kind in _refusal_groups():
        answer = "<br/>".join(html.escape(part)
                                           for part in textwrap.wrap(message, 64))
        rows.append(f'<tr><td align="left" valign="top">{html.escape(trigger)}</td>'
                    f'<td align="left" valign="top">{html.escape(", ".join(states))}</td>'
                    f'<td align="left" balign="left">{answer} '
                    f'<font color="#888888">({html.escape(kind)})</font></td></tr>')
    return ('<<table border="0" cellborder="0" cellspacing="0" cellpadding="2" '
            f'color="#999999">{"".join(rows)}</table>>')


def _gv_legend() -> str:
    def swatch(key: str, text: str, extra: str = "") -> str:
        fill, border = COLORS[key]
        return (f'<td bgcolor="{fill}" color="{border}" border="2"{extra}>{text}</td>'
                '<td border="0"> </td>')

    def line(color: str, text: str, dashed: bool = False) -> str:
        dash = "- - -" if dashed else "━━━"
        return (f'<td border="0" align="left"><font color="{color}">{dash}</font> '
                f'{text}</td>')

    return ('<<table border="0" cellspacing="2" cellpadding="4"><tr>'
            '<td border="0"><b>legend</b></td>'
            + swatch("current", "<b>current</b>") + swatch("visited", "visited")
            + swatch("default", "not visited") + swatch("done", "step done")
            + swatch("undone", "step undone") + swatch("failed", "<b>step failed</b>")
            + '</tr><tr><td border="0"></td>'
            + line(TAKEN_EDGE, "taken ×count, last time", False)
            + '<td border="0"></td>'
            + line(ERROR_EDGE, "taken, with an error")
            + '<td border="0"></td>'
            + line(IDLE_EDGE, "not taken", dashed=True)
            + "</tr></table>>")


def machine_graph() -> graphviz.Digraph:
    """The lifecycle machine as a ``graphviz.Digraph`` (``.pipe("svg")``, ``.render(...)``)."""
    return _build_graphviz(_machine_view())


def container_graph(info: Mapping[str, Any]) -> graphviz.Digraph:
    """One container's history over the machine, from its ``Engine.inspect`` dict."""
    return _build_graphviz(_container_view(info))


# -- Mermaid --------------------------------------------------------------------------------


def _mm_text(text: str) -> str:
    # Mermaid ends a transition's text at ``:``, ``;`` or ``#``: use a look-alike colon
    return text.replace(":", "∶").replace(";", ",").replace("#", "")


def _mm_style(fill: str, border: str, width: str = "1px") -> dict[str, str]:
    # Mermaid's ``color`` is the text colour, not Graphviz's border colour
    return {"fill": fill, "stroke": border, "stroke-width": width, "color": "black"}


def _mm_node_styles() -> dict[str, dict[str, str]]:
    styles = {k: _mm_style(fill, border) for k, (fill, border) in COLORS.items()}
    styles["current"].update({"stroke-width": "3px", "font-weight": "bold"})
    styles["visited"]["stroke-width"] = "2px"
    styles["failed"].update({"stroke-width": "3px", "font-weight": "bold"})
    return styles


def _mm_edge_label(e: _EdgeView, view: _View) -> str:
    if view.history:
        return _mm_text(_edge_text(e, view))
    return _mm_text(f"{e.trigger} ({e.note})" if e.note else e.trigger)


def _build_mermaid(view: _View) -> str:
    labels = {(e.trigger, e.source): _mm_edge_label(e, view) for e in view.edges}
    source = _transitions_graph(view, "mermaid", labels, _mm_node_styles(), {}, "TB").source
    out: list[str] = []
    lines = source.splitlines()
    # transitions writes the title as bare front matter; Mermaid reads ``title:`` from it
    if lines[:1] == ["---"] and len(lines) > 2 and lines[2] == "---":
        out += ["---", f"title: {json.dumps(view.title)}", "---"]
        lines = lines[3:]
    for line in lines:
        stripped = line.strip()
        if stripped == f'state "{STARTING}" as {STARTING}':
            out += _mm_pipeline(view)
        elif stripped.startswith("Class "):
            out.append(line.replace("Class ", "class ", 1))
        elif stripped:
            out.append(line)
    out += [f"  class step_{s.name} s_{s.style}" for s in view.steps if s.style != "default"]
    out.append(f"  {REMOVING} --> [*]")
    if view.history:
        out.append(f"  note left of created\n    {_mm_text(view.subtitle)}\n  end note")
    if not view.history:
        out += _mm_refusal_notes()
    return "\n".join(out) + "\n"


def _mm_pipeline(view: _View) -> list[str]:
    out = [f"  state {STARTING} {{"]
    for i, step in enumerate(view.steps, 1):
        text = f"{i}. {step.name}"
        if step.duration is not None:
            text += f" ({format_duration(step.duration)})"
        if step.style == "failed":
            text += " FAILED"
        elif step.style in ("undone", "undo_failed"):
            text += " " + step.style.replace("_", " ")
        if step.name == "network" and view.error_sub_step:
            text += f" at {view.error_sub_step}"
        out.append(f'    state "{_mm_text(text)}" as step_{step.name}')
    chain = [f"step_{s.name}" for s in view.steps]
    out.append(f"    [*] --> {chain[0]}")
    out += [f"    {a} --> {b}" for a, b in zip(chain, chain[1:], strict=False)]
    out.append("  }")
    out.append(f"  note right of {STARTING}\n    start plan∶ a failed step and every done step "
               "are undone in reverse, then fail\n  end note")
    return out


def _mm_refusal_notes() -> list[str]:
    by_state: dict[str, list[str]] = {}
    for r in REFUSALS:
        by_state.setdefault(r.state, []).append(
            f"{r.trigger} refused∶ {_mm_text(r.message.replace(' {name}', ''))}")
    out = []
    for state in STATES:
        if state in by_state and state != STARTING:
            out.append(f"  note right of {state}\n    "
                       + "\n    ".join(by_state[state]) + "\n  end note")
    return out


# -- deployments ----------------------------------------------------------------------------


def _service_status(states: Mapping[str, str], name: str) -> str:
    """The colour key of a service's state: "running (healthy)" is healthy, "dead (exit 1)"
    failed, "dead (exit 0)" dead."""
    status = states.get(name)
    if status is None:
        return "not created"
    word, _, rest = status.partition(" (")
    detail = rest.rstrip(")")
    if word == "running" and detail in ("healthy", "unhealthy", "starting"):
        return detail
    if word == "dead" and detail.startswith("exit ") and detail != "exit 0":
        return "failed"
    return word if word in SERVICE_COLORS else "unknown"


def deployment_graph(services: Mapping[str, Mapping[str, Any]], states: Mapping[str, str],
                     *, title: str = "deployment") -> graphviz.Digraph:
    """Services as nodes coloured by state; an edge from a service to each it depends on."""
    g = graphviz.Digraph(title)
    g.attr(rankdir="TB", nodesep="0.6", ranksep="0.7", fontname=FONT, labelloc="t",
           labeljust="l", pad="0.3",
           label=f'<<font point-size="16"><b>{html.escape(title)}</b></font><br/>'
                 '<font point-size="10" '
                 'color="#555555">an arrow points from a service to one it depends on, '
                 'labelled with the condition</font>>')
    g.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="13",
           margin="0.2,0.08")
    g.attr("edge", fontname=FONT, fontsize="10", color="#555555")
    for name in services:
        status = _service_status(states, name)
        fill, border = SERVICE_COLORS[status]
        g.node(f"svc_{name}", label=f'<<b>{html.escape(name)}</b><br/><font point-size="10">'
               f"{html.escape(states.get(name, status))}</font>>", fillcolor=fill,
               color=border, penwidth="2", id=f"service_{name}", tooltip=name)
    for name, svc in services.items():
        for dep, condition in (svc.get("depends_on") or {}).items():
            if dep not in services:
                g.node(f"svc_{dep}", label=f"{dep}\n(not in the file)", style="dashed")
            g.edge(f"svc_{name}", f"svc_{dep}", label=f" {condition or 'service_started'} ")
    shown = list(dict.fromkeys(_service_status(states, n) for n in services))
    if shown:
        cells = "".join(f'<td bgcolor="{SERVICE_COLORS[s][0]}" color="{SERVICE_COLORS[s][1]}" '
                        f'border="2">{html.escape(s)}</td>' for s in shown)
        with g.subgraph(name="legend") as s:
            s.attr(rank="sink")
            s.node("legend", shape="plaintext", style="", fontsize="10",
                   label=f'<<table border="0" cellspacing="3" cellpadding="4"><tr>'
                         f'<td border="0"><b>state</b></td>{cells}</tr></table>>')
    return g


def _mm_deployment(services: Mapping[str, Mapping[str, Any]], states: Mapping[str, str],
                   title: str) -> str:
    # Mermaid ids cannot carry every character a service name may: number them
    ids = {name: f"svc{i}" for i, name in enumerate(services)}
    out = ["---", f"title: {json.dumps(title)}", "---", "flowchart TB"]
    for key, (fill, border) in SERVICE_COLORS.items():
        out.append(f"  classDef {key.replace(' ', '_')} fill:{fill},stroke:{border},"
                   "stroke-width:2px,color:black")
    for name, nid in ids.items():
        status = _service_status(states, name)
        text = html.escape(f"{name}<br/>{states.get(name, status)}", quote=False)
        out.append(f'  {nid}["{text.replace("&lt;br/&gt;", "<br/>")}"]:::'
                   f"{status.replace(' ', '_')}")
    for name, svc in services.items():
        for dep, condition in (svc.get("depends_on") or {}).items():
            if dep not in ids:
                ids[dep] = f"svc{len(ids)}"
                out.append(f'  {ids[dep]}["{dep} (not in the file)"]')
            out.append(f"  {ids[name]} -->|{condition or 'service_started'}| {ids[dep]}")
    return "\n".join(out) + "\n"


def deployment_diagram(services: Mapping[str, Mapping[str, Any]], states: Mapping[str, str],
                       fmt: str = "mermaid", *, title: str = "deployment") -> str | bytes:
    """A deployment's services (``{name: {"depends_on": {other: condition}}}``) coloured by
    ``states`` (``{name: status}``; a missing name is drawn as not created)."""
    _check_format(fmt)
    if fmt == "mermaid":
        return _mm_deployment(services, states, title)
    return render(deployment_graph(services, states, title=title), fmt)


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


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InvalidParameter(f"unknown diagram format {fmt!r}: use one of "
                               f"{', '.join(FORMATS)}")


def render(graph: graphviz.Digraph | graphviz.Source, fmt: str) -> str | bytes:
    """``dot`` source as text; ``svg`` and ``png`` as bytes made by the ``dot`` program."""
    if fmt == "dot":
        return graph.source
    if fmt not in ("svg", "png"):
        raise InvalidParameter(f"cannot render a Graphviz graph as {fmt!r}: use dot, svg or "
                               "png")
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise SystemFailure(
            f"rendering {fmt} needs Graphviz's `dot` program, which is not on PATH (install "
            "the Debian package graphviz), or ask for --format mermaid or dot") from exc
    except graphviz.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise SystemFailure(f"dot could not render {fmt}: {stderr.strip() or exc}") from exc


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
