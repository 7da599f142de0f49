"""What ``ps``, ``inspect``, ``events`` and ``port`` print, as Docker prints it.

- ``--format``: Go templates (``engine.cli.gotemplate``) over the objects Docker's CLI hands its
  templates: ``ContainerContext`` for ``ps`` (``{{.ID}}``, ``{{.Ports}}``, ``{{.Label "k"}}``,
  ``table ...`` with a header row), the inspect JSON for ``inspect``, the event message for
  ``events``;
- ``--filter``: Docker's keys and the way it combines them (values of one key OR, keys AND,
  every ``label`` must match);
- the PORTS column (``0.0.0.0:8080->80/tcp``), the SIZE column (``0B (virtual 1.2MB)``),
  event lines with Docker's fixed nanosecond timestamps.

Imported by the CLI only for the commands that print these, so it may import what it needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..errors import InvalidParameter, NotFound
from . import gotemplate
from .gofuncs import go_quote
from .govalues import GoStruct, Method
from .output import container_status, human_duration, human_size

TABLE = "table"
PS_DEFAULT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t" \
    "{{.Ports}}\t{{.Names}}"
PS_QUIET = "{{.ID}}"
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Label": "LABEL", "Mounts": "MOUNTS",
              "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS"}
# Go maps in Docker's inspect types: a missing key there prints <no value>, elsewhere an error
INSPECT_MAPS = frozenset({"Labels", "Networks", "Ports", "PortBindings", "Tmpfs",
                          "ExposedPorts", "Volumes", "Options", "Attributes"})
DOCKER_STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


# -- formats and tables ---------------------------------------------------------------------


def split_format(fmt: str) -> tuple[bool, str]:
    """Whether ``fmt`` is a table, and the template itself, as Docker's ``preFormat``: the
    ``table`` word dropped, spaces trimmed, ``\\t`` and ``\\n`` typed on the command line
    made real."""
    table = fmt.startswith(TABLE)
    body = fmt[len(TABLE):] if table else fmt
    return table, body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def tabwrite(lines: Sequence[str], minwidth: int = 10, padding: int = 3) -> list[str]:
    """Docker's ``tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)``: a tab ends a cell, the
    cells of a column are padded to the widest plus 3, at least 10; a line's last cell is
    not padded."""
    rows = [line.split("\t") for line in lines]
    widths: dict[int, int] = {}
    for cells in rows:
        for i, cell in enumerate(cells[:-1]):
            widths[i] = max(widths.get(i, 0), len(cell))
    out = []
    for cells in rows:
        padded = [cell.ljust(max(minwidth, widths[i] + padding))
                  for i, cell in enumerate(cells[:-1])]
        out.append("".join(padded) + cells[-1])
    return out


def render_all(fmt: str, items: Iterable[Any], header: Any = None, **options: Any) -> list[str]:
    """The lines of ``items`` through ``fmt``; a table gets the header row (``header``
    rendered through the same template) and its columns aligned."""
    table, body = split_format(fmt)
    template = gotemplate.parse(body)
    lines = []
    if table and header is not None:
        lines.append(template.render(header, header=True))
    lines += [template.render(item, **options) for item in items]
    if table:
        lines = tabwrite([line for text in lines for line in text.split("\n")])
    return lines


# -- ps -------------------------------------------------------------------------------------


def docker_state(info: Mapping[str, Any]) -> str:
    """Docker's word for the container's state (ours: ``dead`` is Docker's ``exited``)."""
    if info.get("Restarting"):
        return "restarting"
    return {"dead": "exited", "starting": "created"}.get(info["State"], info["State"])


def display_ports(published: Iterable[Mapping[str, Any]], exposed: Iterable[str] = ()) -> str:
    """Docker's ``DisplayablePorts``: ``0.0.0.0:8080->80/tcp``, runs of consecutive ports as
    one range (``0.0.0.0:8080-8081->80-81/tcp``), exposed ports as ``80/tcp``."""
    entries = sorted(((p.get("host_ip") or "0.0.0.0", p["proto"], int(p["container_port"]),
                       int(p["host_port"])) for p in published),
                     key=lambda e: (e[0], e[1], e[2]))
    shown = {(e[2], e[1]) for e in entries}
    runs: list[list[Any]] = []
    for ip, proto, private, public in entries:
        last = runs[-1] if runs else None
        if (last and last[0] == ip and last[1] == proto and private == last[3] + 1
                and public == last[5] + 1):
            last[3], last[5] = private, public
        else:
            runs.append([ip, proto, private, private, public, public])
    out = []
    for ip, proto, p_lo, p_hi, h_lo, h_hi in runs:
        private = f"{p_lo}" if p_lo == p_hi else f"{p_lo}-{p_hi}"
        public = f"{h_lo}" if h_lo == h_hi else f"{h_lo}-{h_hi}"
        out.append(f"{ip}:{public}->{private}/{proto}")
    for spec in sorted(set(exposed), key=lambda s: (int(s.split("/")[0]), s)):
        port, _, proto = spec.partition("/")
        if (int(port), proto or "tcp") not in shown:
            out.append(f"{port}/{proto or 'tcp'}")
    return ", ".join(out)


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class ContainerContext(GoStruct):
    """One row of ``ps`` as Docker's templates see it (``formatter.ContainerContext``)."""

    go_type = "*formatter.ContainerContext"

    def __init__(self, info: Mapping[str, Any], *, now: float, trunc: bool = True,
                 size_of: Callable[[Mapping[str, Any]], tuple[int, int]] | None = None) -> None:
        self.info, self.now, self.trunc, self.size_of = info, now, trunc, size_of

    def _created(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.info["Created"])
        except (KeyError, ValueError):
            return None

    def _running(self) -> bool:
        return self.info["State"] in ("running", "paused")

    def go_field(self, name: str) -> Any:
        info = self.info
        if name == "ID":
            return info["Id"][:12] if self.trunc else info["Id"]
        if name == "Names":
            return info["Name"]
        if name == "Image":
            return info["Image"]
        if name == "Command":
            command = info["Command"]
            return go_quote(_ellipsis(command, 20) if self.trunc else command)
        if name == "CreatedAt":
            created = self._created()
            return created.astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z") if created else ""
        if name == "RunningFor":
            created = self._created()
            if created is None:
                return ""
            return f"{human_duration(max(0.0, self.now - created.timestamp()))} ago"
        if name == "Ports":
            if not self._running():
                return ""
            return display_ports(info.get("Ports", ()), info.get("Expose", ()))
        if name == "State":
            return docker_state(info)
        if name == "Status":
            return container_status(dict(info), self.now)
        if name == "Size":
            if self.size_of is None:
                return "0B"
            rw, virtual = self.size_of(info)
            return f"{human_size(rw)} (virtual {human_size(virtual)})" if virtual else \
                human_size(rw)
        if name == "Labels":
            return ",".join(f"{k}={v}" for k, v in sorted(info.get("Labels", {}).items()))
        if name == "Label":
            return Method(lambda key: info.get("Labels", {}).get(key, ""), "Label")
        if name == "Mounts":
            mounts = info.get("Mounts", [])
            return ",".join(_ellipsis(m, 15) if self.trunc else m for m in mounts)
        if name == "LocalVolumes":
            return str(sum(1 for m in info.get("Mounts", []) if not m.startswith("/")))
        if name == "Networks":
            return info.get("Network", "")
        raise KeyError(name)

    def go_json(self) -> dict[str, Any]:
        names = sorted(n for n in PS_HEADERS if n != "Label")
        return {n: self.go_field(n) for n in names}


class _Header(GoStruct):
    """The title row of a table: every field its column's title (``.Label "k"`` too)."""

    go_type = "formatter.SubHeaderContext"

    def __init__(self, titles: Mapping[str, str]) -> None:
        self.titles = titles

    def go_field(self, name: str) -> Any:
        title = self.titles.get(name, name.upper())
        return Method(lambda *_args: title, name) if name == "Label" else title


PS_FILTER_KEYS = ("ancestor", "before", "exited", "health", "id", "label", "name", "network",
                  "since", "status", "volume")


def _key_values(items: Sequence[str], keys: Sequence[str]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise InvalidParameter(f"bad format of filter (expected name=value): {item!r}")
        if key not in keys:
            raise InvalidParameter(f"invalid filter '{key}'")
        wanted.setdefault(key, []).append(value)
    return wanted


def _regex(key: str, value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise InvalidParameter(f"invalid filter '{key}={value}': {exc}") from None


def _labels_match(wanted: Iterable[str], labels: Mapping[str, str]) -> bool:
    """Docker's ``MatchKVList``: every ``key`` present, every ``key=value`` equal."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _image_matches(value: str, name: str, image_id: str) -> bool:
    short = value.removeprefix("sha256:")
    names = {name, name.removesuffix(":latest")}
    return value in names or value.removesuffix(":latest") in names or (
        len(short) >= 4 and image_id.startswith(short))


class ContainerFilter:
    """``ps --filter``: values of one key OR, different keys AND, all labels must match.
    ``status`` lists stopped containers without ``-a``, as Docker's daemon does."""

    def __init__(self, items: Sequence[str]) -> None:
        self.wanted = _key_values(items, PS_FILTER_KEYS)
        for value in self.wanted.get("status", []):
            if value not in DOCKER_STATES:
                raise InvalidParameter(f"invalid filter 'status={value}'")
        self.exited = []
        for value in self.wanted.get("exited", []):
            try:
                self.exited.append(int(value))
            except ValueError:
                raise InvalidParameter(f"invalid filter 'exited={value}'") from None
        for key in ("id", "name"):
            for value in self.wanted.get(key, []):
                _regex(key, value)

    @property
    def wants_all(self) -> bool:
        return "status" in self.wanted

    def bind(self, infos: Sequence[Mapping[str, Any]]) -> None:
        """Find the containers ``before``/``since`` name among ``infos`` (all of them)."""
        self.created: dict[str, list[str]] = {}
        for key in ("before", "since"):
            for ref in self.wanted.get(key, []):
                found = [i for i in infos if i["Name"] == ref.lstrip("/")] or [
                    i for i in infos if i["Id"].startswith(ref)]
                if len(found) != 1:
                    raise NotFound(f"No such container: {ref}")
                self.created.setdefault(key, []).append(found[0]["Created"])

    def __call__(self, info: Mapping[str, Any]) -> bool:
        w = self.wanted
        name = info["Name"]
        created = getattr(self, "created", {})
        if any(info["Created"] >= t for t in created.get("before", [])):
            return False
        if any(info["Created"] <= t for t in created.get("since", [])):
            return False
        if "id" in w and not any(_regex("id", v).search(info["Id"]) for v in w["id"]):
            return False
        if "name" in w and not any(_regex("name", v).search(name)
                                   or _regex("name", v).search("/" + name)
                                   for v in w["name"]):
            return False
        if "label" in w and not _labels_match(w["label"], info.get("Labels", {})):
            return False
        if "status" in w and docker_state(info) not in w["status"]:
            return False
        if self.exited and not (info["State"] == "dead" and info.get("ExitCode") in self.exited
                                and not info.get("StartedAt", "").startswith("0001-")):
            return False
        if "ancestor" in w and not any(
                _image_matches(v, info["Image"], info.get("ImageID", "")) for v in w["ancestor"]):
            return False
        if "network" in w and info.get("Network") not in w["network"]:
            return False
        if "volume" in w and not set(w["volume"]) & set(info.get("Mounts", [])):
            return False
        return not ("health" in w and (info.get("Health") or "none") not in w["health"])


def ps_lines(infos: Sequence[Mapping[str, Any]], fmt: str | None, *, quiet: bool,
             trunc: bool, size: bool, now: float,
             size_of: Callable[[Mapping[str, Any]], tuple[int, int]]) -> list[str]:
    """The lines ``ps`` prints for ``infos`` (already filtered and limited)."""
    if quiet:
        fmt = PS_QUIET
    elif not fmt or fmt == TABLE:
        fmt = PS_DEFAULT + ("\t{{.Size}}" if size else "")
    # as Docker: a template that asks for the size gets it, -s or not
    wants_size = size or ".Size" in fmt
    rows = [ContainerContext(info, now=now, trunc=trunc,
                             size_of=size_of if wants_size else None) for info in infos]
    return render_all(fmt, rows, header=_Header(PS_HEADERS))


# -- inspect --------------------------------------------------------------------------------


def inspect_lines(objects: Sequence[Any], fmt: str) -> list[str]:
    """``inspect --format``: the template over each object's JSON, a missing key an error
    (Docker's CLI renders with ``missingkey=error``)."""
    _, body = split_format(fmt)
    template = gotemplate.parse(body)
    return [template.render(obj, missing_key_error=True, lenient_keys=INSPECT_MAPS)
            for obj in objects]


# -- events ---------------------------------------------------------------------------------


EVENT_FILTER_KEYS = ("container", "event", "image", "label", "name", "network", "type",
                     "volume")


def event_stamp(nanos: int) -> str:
    """Docker's ``2006-01-02T15:04:05.000000000Z07:00`` in local time."""
    seconds, frac = divmod(nanos, 1_000_000_000)
    local = datetime.fromtimestamp(seconds).astimezone()
    offset = local.strftime("%z")
    zone = "Z" if offset in ("+0000", "-0000", "") else f"{offset[:3]}:{offset[3:]}"
    return f"{local.strftime('%Y-%m-%dT%H:%M:%S')}.{frac:09d}{zone}"


def event_text(ev: Any) -> str:
    """``docker events``' line: time, type, action, actor id, sorted attributes."""
    attrs = ", ".join(f"{k}={v}" for k, v in sorted(ev.attributes.items()))
    line = f"{event_stamp(ev.to_dict()['timeNano'])} {ev.type} {ev.action} {ev.id}"
    return line + (f" ({attrs})" if attrs else "")


def event_message(ev: Any) -> GoStruct:
    """The event as Docker's templates see it (``events.Message``); ``json`` prints the API's
    JSON, with the legacy ``status``/``id``/``from`` of container events."""
    data = ev.to_dict()
    legacy = {}
    if ev.type == "container":
        legacy = {"status": ev.action, "id": ev.id, "from": ev.attributes.get("image", "")}
    actor = GoStruct({"ID": ev.id, "Attributes": dict(ev.attributes)}, "events.Actor",
                     data["Actor"])
    fields = {"Status": legacy.get("status", ""), "ID": legacy.get("id", ""),
              "From": legacy.get("from", ""), "Type": ev.type, "Action": ev.action,
              "Actor": actor, "Scope": data["scope"], "Time": data["time"],
              "TimeNano": data["timeNano"]}
    return GoStruct(fields, "events.Message", {**legacy, **data})


def event_lines_format(fmt: str | None) -> Callable[[Any], str]:
    """What one event prints as: Docker's line, or ``fmt`` (``json`` is ``{{json .}}``)."""
    if not fmt:
        return event_text
    if fmt == "json":
        fmt = "{{json .}}"
    _, body = split_format(fmt)
    template = gotemplate.parse(body)
    return lambda ev: template.render(event_message(ev))


def _fuzzy(values: Iterable[str], *sources: str) -> bool:
    """Docker's ``FuzzyMatch``: equal, or a prefix."""
    return any(src and (src == v or src.startswith(v)) for v in values for src in sources)


def event_filter(items: Sequence[str]) -> Callable[[Any], bool]:
    """``events --filter`` as Docker's: values of one key OR, keys AND, every label must
    match; ``container`` and ``network`` take an id prefix or a name (prefix); ``event``
    matches ``exec_start`` to ``exec_start: sh``."""
    wanted = _key_values(items, EVENT_FILTER_KEYS)

    def test(ev: Any) -> bool:
        attrs = ev.attributes
        name = attrs.get("name", "")
        if "event" in wanted:
            action = ev.action
            base = action.split(":", 1)[0]
            if action not in wanted["event"] and base not in wanted["event"]:
                return False
        if "type" in wanted and ev.type not in wanted["type"]:
            return False
        if "container" in wanted and not _fuzzy(wanted["container"], ev.id, name):
            return False
        if "network" in wanted and not _fuzzy(wanted["network"], ev.id, name):
            return False
        if "name" in wanted and name not in wanted["name"]:
            return False
        if "label" in wanted and not _labels_match(wanted["label"], attrs):
            return False
        if "image" in wanted and not any(
                _image_matches(v, attrs.get("image", "") if ev.type == "container" else name,
                               ev.id if ev.type == "image" else "")
                for v in wanted["image"]):
            return False
        return not ("volume" in wanted and not (ev.type == "volume" and _fuzzy(
            wanted["volume"], ev.id, name)))

    return test


# -- port -----------------------------------------------------------------------------------


def port_lines(info: Mapping[str, Any], private: str | None) -> list[str]:
    """``docker port``: ``80/tcp -> 0.0.0.0:32768`` for each published port of a running
    container, or only the host side of ``private`` (``80`` or ``80/udp``)."""
    ports = info["NetworkSettings"]["Ports"] if info["State"]["Running"] else {}
    if private is not None:
        port, _, proto = private.partition("/")
        key = f"{port}/{proto or 'tcp'}"
        bindings = [b for b in ports.get(key) or [] if b.get("HostPort")]
        if not bindings:
            raise InvalidParameter(
                f"No public port '{key}' published for {info['Name'].lstrip('/')}")
        return [f"{b['HostIp']}:{b['HostPort']}" for b in bindings]
    lines = []
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        lines += [f"{key} -> {b['HostIp']}:{b['HostPort']}" for b in ports[key] or []]
    return lines
