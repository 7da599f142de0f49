"""A deployment's diagram: services coloured by state, ``depends_on`` edges labelled with
conditions.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

import graphviz

from .dot import render
from .model import FONT, _check_format

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
