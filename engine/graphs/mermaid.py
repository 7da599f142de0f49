"""Mermaid diagrams of the machine and of a container's history.
"""

from __future__ import annotations

import json

from states import REFUSALS, REMOVING, STARTING, STATES

from .model import COLORS, _edge_text, _EdgeView, _transitions_graph, _View, format_duration


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
