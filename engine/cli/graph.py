"""Lifecycle diagrams: ``graph`` (the machine, or one container's history drawn on it) and
``history``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidParameter, NotFound
from .common import _engine, _Usage
from .output import _out


def cmd_graph(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..graphs import draw as graphs

    def service_states(project: Any) -> dict[str, str]:
        # "running (healthy)", "dead (exit 1)"; a service without a container is left out,
        # and the diagram draws it as not created
        eng = _engine(args)
        states = {}
        for service in project.services:
            try:
                state = eng.inspect(project.container_name(service))["State"]
            except NotFound:
                continue
            health = (state.get("Health") or {}).get("Status", "")
            if health:
                states[service] = f"{state['Status']} ({health})"
            elif state["Status"] == "dead":
                states[service] = f"dead (exit {state.get('ExitCode', 0)})"
            else:
                states[service] = state["Status"]
        return states

    suffixes = {".mmd": "mermaid", ".mermaid": "mermaid", ".dot": "dot", ".gv": "dot",
                ".svg": "svg", ".png": "png"}
    suffix = Path(args.output).suffix.lower() if args.output else ""
    fmt = args.format or suffixes.get(suffix, "mermaid")
    to_stdout = args.output in (None, "-")
    if fmt in ("svg", "png") and to_stdout and sys.stdout.isatty():
        raise _Usage(f"{fmt} is binary: give -o FILE, or redirect the output")
    if args.deployment:
        if args.container:
            raise _Usage("--deployment draws a deployment file, not a container")
        from ..compose.project import load_project
        from .compose import find_file

        project = load_project(find_file(args.file), project_name=args.project_name)
        services = {name: {"depends_on": dict(svc.depends_on)}
                    for name, svc in project.services.items()}
        out = graphs.deployment_diagram(services, service_states(project), fmt,
                                        title=f"deployment {project.name}")
    elif args.container:
        out = graphs.container_diagram(_engine(args).inspect(args.container), fmt)
    else:
        out = graphs.machine_diagram(fmt)
    data = out.encode() if isinstance(out, str) else out
    if to_stdout:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
    else:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise InvalidParameter(f"cannot write {args.output}: {exc.strerror}") from exc
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    import json

    from ..graphs import draw as graphs

    rows = graphs.history_rows(_engine(args).inspect(args.container))
    if args.format == "json":
        _out(json.dumps(rows, indent=2))
    else:
        sys.stdout.write(graphs.format_history_table(rows))
    return 0
