"""Lifecycle diagrams: drawn from the transition table, rendered by the real ``dot``."""

from __future__ import annotations

import json
import re
import shutil
import struct
import xml.etree.ElementTree as ET

import graphviz
import pytest

import states
from engine import STEP_NAMES, InvalidParameter, SystemFailure
from engine.cli.main import main
from engine.graphs import deployment
from engine.graphs import draw as graphs
from engine.graphs import model as graph_model
from engine.store.paths import Layout

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1718000000.0  # 2024-06-10T06:13:20Z


def _node_attrs(dot: str, node: str) -> dict[str, str]:
    """The attributes of every statement declaring ``node``, merged as dot merges them."""
    attrs: dict[str, str] = {}
    for line in dot.splitlines():
        m = re.match(rf"\s*{re.escape(node)} \[(.*)\]$", line)
        if m:
            for key, value in re.findall(r'(\w+)=("[^"]*"|<.*?>(?= \w+=|$)|\S+)', m.group(1)):
                attrs[key] = value.strip('"')
    return attrs


def _edges(dot: str) -> dict[tuple[str, str], str]:
    """``(tail, head) -> the rest of the line`` for every drawn edge."""
    found = {}
    for line in dot.splitlines():
        m = re.match(r"\s*(\w+) -> (\w+)(?: \[(.*)\])?$", line)
        if m and "style=invis" not in (m.group(3) or ""):
            found[(m.group(1), m.group(2))] = m.group(3) or ""
    return found


def _failed_info(restarts: int = 2) -> dict:
    """An ``Engine.inspect`` dict: ran once, exited, then failed ``restarts`` times at mounts."""
    hist = [
        {"time": T0 + 1, "trigger": "start", "source": "created", "dest": "starting",
         "error": ""},
        {"time": T0 + 1.2, "trigger": "started", "source": "starting", "dest": "running",
         "error": ""},
        {"time": T0 + 60, "trigger": "exit", "source": "running", "dest": "dead", "error": ""},
    ]
    for i in range(restarts):
        t = T0 + 61 + i
        hist += [
            {"time": t, "trigger": "start", "source": "dead", "dest": "starting", "error": ""},
            {"time": t + 0.25, "trigger": "fail", "source": "starting", "dest": "dead",
             "error": "mounts: injected fault at step mounts"},
        ]
    done = STEP_NAMES[:STEP_NAMES.index("mounts")]
    steps = [{"name": n, "duration": 0.01, "outcome": "undone", "error": ""} for n in done]
    steps.append({"name": "mounts", "duration": 0.002, "outcome": "failed",
                  "error": "injected fault at step mounts"})
    return {"Id": "ab" * 32, "Name": "/web", "Created": "2024-06-10T06:13:20.000000Z",
            "State": {"Status": "dead", "ExitCode": 128, "ErrorStep": "mounts",
                      "Error": "mounts: injected fault at step mounts"},
            "RestartCount": restarts, "History": hist, "StartSteps": steps}


# -- the machine ----------------------------------------------------------------------------


def test_dot_has_every_state_and_transition_of_the_table() -> None:
    dot = graphs.machine_diagram("dot")
    assert isinstance(dot, str)
    edges = _edges(dot)
    for state in states.STATES:
        assert _node_attrs(dot, state), state
    for t in states.TRANSITIONS:
        for source in t.sources:
            assert (source, t.dest) in edges, (t, source)
            assert f"<b>{t.trigger}</b>" in edges[(source, t.dest)], (t, source)


def test_dot_shows_the_start_plan_inside_starting_and_the_refusals() -> None:
    dot = graphs.machine_diagram("dot")
    cluster = dot[dot.index("subgraph cluster_starting"):]
    assert re.search(r"^\s*starting$", cluster, re.M), "starting heads the plan's box"
    chain = ["plan_begin", *(f"step_{n}" for n in STEP_NAMES)]
    for a, b in zip(chain, chain[1:], strict=False):
        assert (a, b) in _edges(cluster), (a, b)
    # the transitions out of starting leave from the box's border
    for t in states.TRANSITIONS:
        if states.STARTING in t.sources:
            assert "ltail=cluster_starting" in _edges(dot)[(states.STARTING, t.dest)]
    for r in states.REFUSALS:
        message = r.message.replace(" {name}", "")
        assert message.split(":")[0] in dot, r


def test_mermaid_has_every_state_and_transition_of_the_table() -> None:
    text = graphs.machine_diagram("mermaid")
    assert isinstance(text, str)
    assert text.startswith("---\ntitle: ")
    assert "stateDiagram-v2" in text
    for state in states.STATES:
        assert (f'state "{state}" as {state}' in text
                or f"state {state} {{" in text), state
    for t in states.TRANSITIONS:
        for source in t.sources:
            assert re.search(rf"^\s*{source} --> {t.dest}: {t.trigger}\b", text, re.M), t
    # the plan as a composite state, in order
    body = text[text.index(f"state {states.STARTING} {{"):]
    body = body[:body.index("\n  }")]
    ids = [f"step_{n}" for n in STEP_NAMES]
    for a, b in zip(ids, ids[1:], strict=False):
        assert f"{a} --> {b}" in body
    for r in states.REFUSALS:
        assert f"{r.trigger} refused" in text
    # Mermaid ends a transition's text at a second colon
    for line in text.splitlines():
        if "-->" in line and ": " in line:
            assert ":" not in line.split(": ", 1)[1], line


def test_svg_is_made_by_dot_and_names_every_state_and_step() -> None:
    svg = graphs.machine_diagram("svg")
    assert isinstance(svg, bytes)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    nodes = {g.get("id"): g.findtext(f"{SVG}title")
             for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    for state in states.STATES:
        assert nodes.get(f"state_{state}") == state
    for step in STEP_NAMES:
        assert nodes.get(f"step_{step}") == f"step_{step}"
    clusters = [g.get("id") for g in root.iter(f"{SVG}g") if g.get("class") == "cluster"]
    assert "cluster_starting" in clusters


def test_png_is_made_by_dot() -> None:
    png = graphs.machine_diagram("png")
    assert isinstance(png, bytes)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5 * 1024
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert 600 < width < 6000 and 400 < height < 6000


def _positions(graph: graphviz.Digraph) -> dict[str, tuple[float, float]]:
    layout = json.loads(graph.pipe(format="json"))
    return {o["name"]: tuple(map(float, o["pos"].split(","))) for o in layout["objects"]
            if "pos" in o}


@pytest.mark.parametrize("graph", [graphs.machine_graph, lambda: graphs.container_graph(
    _failed_info())], ids=["machine", "container"])
def test_layout_reads_the_plan_left_to_right_and_the_states_below_it(graph) -> None:
    pos = _positions(graph())
    rows = [STEP_NAMES[:graph_model.PIPELINE_ROW], STEP_NAMES[graph_model.PIPELINE_ROW:]]
    for row in rows:
        xs = [pos[f"step_{n}"][0] for n in row]
        ys = {pos[f"step_{n}"][1] for n in row}
        assert xs == sorted(xs), row
        assert len(ys) == 1, row
    # dot's y grows upwards: the second row is below the first, running and dead below both
    assert pos[f"step_{rows[1][0]}"][1] < pos[f"step_{rows[0][0]}"][1]
    for state in (states.RUNNING, states.DEAD):
        assert pos[state][1] < pos[f"step_{rows[1][0]}"][1]


def test_graph_objects_for_embedders() -> None:
    g = graphs.machine_graph()
    assert isinstance(g, graphviz.Digraph)
    assert g.source == graphs.machine_diagram("dot")
    c = graphs.container_graph(_failed_info())
    assert isinstance(c, graphviz.Digraph)
    assert c.pipe(format="svg").lstrip().startswith(b"<?xml")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidParameter, match="pdf"):
        graphs.machine_diagram("pdf")


def test_missing_dot_is_a_clear_system_failure(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemFailure, match="`dot`"):
        graphs.machine_diagram("svg")
    # the text formats need no binary
    assert graphs.machine_diagram("dot")
    assert graphs.machine_diagram("mermaid")


# -- one container --------------------------------------------------------------------------


def test_container_dot_marks_the_failed_step_and_the_restart_loop() -> None:
    dot = graphs.container_diagram(_failed_info(restarts=2), "dot")
    fill, border = graph_model.COLORS["failed"]
    mounts = _node_attrs(dot, "step_mounts")
    assert mounts["fillcolor"] == fill and mounts["color"] == border
    assert "FAILED" in mounts["label"]
    for name in STEP_NAMES:
        if name != "mounts":
            assert _node_attrs(dot, f"step_{name}")["fillcolor"] != fill, name
    assert _node_attrs(dot, "step_ipc")["fillcolor"] == graph_model.COLORS["undone"][0]
    assert _node_attrs(dot, "step_process")["fillcolor"] == graph_model.COLORS["default"][0]

    # current, visited and never visited states are told apart
    assert _node_attrs(dot, "dead")["fillcolor"] == graph_model.COLORS["current"][0]
    for state in ("created", "starting", "running"):
        assert _node_attrs(dot, state)["fillcolor"] == graph_model.COLORS["visited"][0]
    for state in ("paused", "removing"):
        assert _node_attrs(dot, state)["fillcolor"] == graph_model.COLORS["default"][0]
    assert len({graph_model.COLORS[k][0] for k in ("current", "visited", "failed", "default")}) == 4

    edges = _edges(dot)
    restart = edges[("dead", "starting")]
    assert "start ×2</b>" in restart and "last 06:14:22" in restart
    assert "lhead=cluster_starting" in restart
    assert "fail ×2" in edges[("starting", "dead")]
    assert graph_model.ERROR_EDGE in edges[("starting", "dead")]
    assert "injected fault" in edges[("starting", "dead")]  # the last error it carried
    assert "start ×1</b>" in edges[("created", "starting")]
    assert "last 06:13:21" in edges[("created", "starting")]
    assert "exit ×1" in edges[("running", "dead")]
    assert "dashed" in edges[("running", "paused")] and "×" not in edges[("running", "paused")]
    assert "legend" in dot


def test_container_mermaid_marks_the_failed_step_and_the_restart_loop() -> None:
    text = graphs.container_diagram(_failed_info(restarts=2), "mermaid")
    assert "class step_mounts s_failed" in text
    assert "class dead s_current" in text
    assert "class running s_visited" in text
    assert re.search(r"dead --> starting: start ×2, last 06∶14∶22", text)
    assert '"9. mounts (2.0ms) FAILED"' in text


def test_container_png_renders() -> None:
    png = graphs.container_diagram(_failed_info(), "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5 * 1024


def test_failed_network_sub_step_is_named() -> None:
    info = _failed_info(restarts=1)
    info["State"].update(ErrorStep="network",
                         Error="network: veth: injected fault at step network.veth")
    info["StartSteps"] = [{"name": "verify", "duration": 0.001, "outcome": "undone"},
                          {"name": "rootfs", "duration": 0.01, "outcome": "undone"},
                          {"name": "network", "duration": 0.02, "outcome": "failed"}]
    dot = graphs.container_diagram(info, "dot")
    assert _node_attrs(dot, "step_network")["fillcolor"] == graph_model.COLORS["failed"][0]
    assert '<font color="#cc0000"><b>veth</b></font>' in dot
    assert "at veth" in graphs.container_diagram(info, "mermaid")


def test_a_new_container_is_current_in_created() -> None:
    info = {"Id": "cd" * 32, "Name": "/fresh", "State": {"Status": "created"},
            "History": [], "StartSteps": []}
    dot = graphs.container_diagram(info, "dot")
    assert _node_attrs(dot, "created")["fillcolor"] == graph_model.COLORS["current"][0]
    assert not any("×" in attrs for attrs in _edges(dot).values())


# -- history --------------------------------------------------------------------------------


def test_history_rows_and_table() -> None:
    rows = graphs.history_rows(_failed_info(restarts=1))
    assert [(r["from"], r["to"], r["trigger"]) for r in rows] == [
        ("created", "starting", "start"), ("starting", "running", "started"),
        ("running", "dead", "exit"), ("dead", "starting", "start"),
        ("starting", "dead", "fail")]
    assert rows[0]["time"] == "2024-06-10T06:13:21.000Z"
    assert rows[0]["duration"] == pytest.approx(1.0)  # in created since Created
    assert rows[2]["duration"] == pytest.approx(58.8)  # running
    assert rows[4]["error"] == "mounts: injected fault at step mounts"
    assert json.loads(json.dumps(rows)) == rows

    table = graphs.format_history_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == ["TIME", "FROM", "TO", "TRIGGER", "DURATION", "ERROR"]
    assert len(lines) == 6
    assert "58.8s" in lines[3]
    assert lines[5].endswith("mounts: injected fault at step mounts")


def test_history_cut_by_its_bound_has_no_first_duration() -> None:
    info = _failed_info(restarts=1)
    info["History"] = info["History"][2:]  # the entries from created were dropped
    rows = graphs.history_rows(info)
    assert rows[0]["duration"] is None and rows[1]["duration"] is not None
    assert graphs.format_history_table(rows).splitlines()[1].split()[-1] == "-"


# -- deployments ----------------------------------------------------------------------------

SERVICES = {
    "web": {"depends_on": {"db": "service_healthy", "cache": "service_started"}},
    "db": {},
    "cache": {"depends_on": {}},
    "migrate": {"depends_on": {"db": "service_completed_successfully"}},
}


def test_deployment_dot_colours_services_and_labels_conditions() -> None:
    status = {"web": "running", "db": "running (healthy)", "migrate": "dead (exit 1)"}
    dot = graphs.deployment_diagram(SERVICES, status, "dot")
    assert _node_attrs(dot, "svc_web")["fillcolor"] == deployment.SERVICE_COLORS["running"][0]
    assert _node_attrs(dot, "svc_db")["fillcolor"] == deployment.SERVICE_COLORS["healthy"][0]
    assert _node_attrs(dot, "svc_migrate")["fillcolor"] == deployment.SERVICE_COLORS["failed"][0]
    assert _node_attrs(dot, "svc_cache")["fillcolor"] == \
        deployment.SERVICE_COLORS["not created"][0]
    edges = _edges(dot)
    assert "service_healthy" in edges[("svc_web", "svc_db")]
    assert "service_started" in edges[("svc_web", "svc_cache")]
    assert "service_completed_successfully" in edges[("svc_migrate", "svc_db")]
    svg = ET.fromstring(graphs.deployment_diagram(SERVICES, status, "svg"))
    ids = {g.get("id") for g in svg.iter(f"{SVG}g")}
    assert {"service_web", "service_db", "service_cache", "service_migrate"} <= ids


def test_deployment_mermaid() -> None:
    text = graphs.deployment_diagram(SERVICES, {"web": "paused"})
    assert "flowchart TB" in text
    assert re.search(r'svc0\["web<br/>paused"\]:::paused', text)
    assert "svc0 -->|service_healthy| svc1" in text
    assert ":::not_created" in text


# -- the CLI, without an engine -------------------------------------------------------------


def test_cli_graph_prints_mermaid_by_default(capfd) -> None:
    assert main(["graph"]) == 0
    out = capfd.readouterr().out
    assert out == graphs.machine_diagram("mermaid")


def test_cli_graph_writes_files_by_suffix_and_format(tmp_path) -> None:
    assert main(["graph", "-o", str(tmp_path / "m.svg")]) == 0
    ET.fromstring((tmp_path / "m.svg").read_bytes())
    assert main(["graph", "--format", "png", "-o", str(tmp_path / "m.out")]) == 0
    assert (tmp_path / "m.out").read_bytes()[:4] == b"\x89PNG"
    assert main(["graph", "--format", "dot", "-o", str(tmp_path / "m.dot")]) == 0
    assert (tmp_path / "m.dot").read_text().startswith("digraph")


def test_cli_graph_of_a_deployment_file(tmp_path, capfd) -> None:
    file = tmp_path / "compose.yaml"
    file.write_text("name: shop\nservices:\n  web:\n    image: busybox\n    depends_on:\n"
                    "      db:\n        condition: service_healthy\n  db:\n    image: busybox\n"
                    "    healthcheck:\n      test: [CMD, 'true']\n")
    root = tmp_path / "root"
    try:
        assert main(["--root", str(root), "graph", "--deployment", "-f", str(file)]) == 0
    finally:  # the engine this made keeps a run folder under /run/corral
        shutil.rmtree(Layout.for_root(root).run, ignore_errors=True)
    out = capfd.readouterr().out
    assert 'title: "deployment shop"' in out
    assert "svc0 -->|service_healthy| svc1" in out
    assert out.count(":::not_created") == 2  # nothing is up
