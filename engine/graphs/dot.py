"""Graphviz diagrams of the machine and of a container's history, and their rendering by ``dot``.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Mapping
from typing import Any

import graphviz

from states import REMOVING, STARTING, STATES

from ..errors import InvalidParameter, SystemFailure
from ..start.netsteps import SUB_STEP_NAMES
from .model import (
    CLUSTER,
    COLORS,
    ERROR_EDGE,
    FONT,
    IDLE_EDGE,
    PIPELINE_ROW,
    TAKEN_EDGE,
    _clock,
    _container_view,
    _edge_text,
    _EdgeView,
    _machine_view,
    _refusal_groups,
    _short,
    _StepView,
    _transitions_graph,
    _View,
    format_duration,
)


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
