"""The store's check at engine start: what crashes and bad disks leave in the state directory.

- temporaries of interrupted writes, creates and removals are removed (an atomic write's
  temporary file once its writer is gone, a ``.tmp-<id>`` folder or a name claimed by a create
  that never finished once older than any create takes, a ``.trash-<id>`` folder always);
- a container folder that cannot be read (truncated or garbage ``config.json`` or
  ``state.json``, a config naming another container, an unknown status) is moved to
  ``<root>/quarantine/`` and its names are released, so the engine serves the rest.

The engine tears down what such a container held before it is set aside (``Engine.reconcile``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from states import STATES

from ..host import mounts
from ..store.config import ID_RE, ContainerConfig
from ..store.container import ContainerState
from ..store.files import STALE_AGE, file_lock, read_json, remove_stale_temporaries
from ..store.paths import ContainerPaths, Layout

NAMES_LOCK = "names.lock"  # in the root, beside the names folder


def quarantine_dir(layout: Layout) -> Path:
    return layout.root / "quarantine"


def entry_problem(paths: ContainerPaths, cid: str) -> str | None:
    """Why the container folder ``paths.dir`` cannot be served, or None when it can."""
    try:
        config = ContainerConfig.from_dict(read_json(paths.config))
        state = ContainerState.from_dict(read_json(paths.state))
    except FileNotFoundError as exc:
        return f"{Path(str(exc.filename)).name} is missing"
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"unreadable state: {exc}"
    if config.id != cid:
        return f"config.json belongs to container {str(config.id)[:64]!r}, not to its folder"
    if state.status not in STATES:
        return f"unknown status {str(state.status)[:32]!r}"
    return None


def recover(paths: ContainerPaths, cid: str) -> tuple[ContainerConfig, ContainerState]:
    """What can be trusted of a bad entry, to tear down what it holds: its config when it
    reads and is its own, else a stand-in with the id (every name the undos derive, the
    namespace, the veth, the leases, the runc state and cgroups, comes from the id)."""
    config: ContainerConfig | None = None
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        config = ContainerConfig.from_dict(read_json(paths.config))
    if config is None or config.id != cid:
        config = ContainerConfig(id=cid, name=cid[:12], image="", image_name="", cmd=[],
                                 created="")
    state = ContainerState()
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        state = ContainerState.from_dict(read_json(paths.state))
    if not isinstance(state.exec_sessions, list) or not isinstance(state.health_pid, int) \
            or not isinstance(state.conmon_pid, int):
        state = ContainerState()
    return config, state


def set_aside(layout: Layout, cid: str) -> Path:
    """Move the folder of ``cid`` to the quarantine and release the names that point at it;
    return where it went."""
    target_dir = quarantine_dir(layout)
    target_dir.mkdir(mode=0o700, exist_ok=True)
    dest = target_dir / cid
    n = 1
    while dest.exists():
        dest = target_dir / f"{cid}.{n}"
        n += 1
    os.rename(layout.containers / cid, dest)
    _release_names(layout, lambda target: target == cid)
    return dest


def _release_names(layout: Layout, gone: object, max_age: float | None = None,
                   only: str | None = None) -> list[Path]:
    """Unlink the name claims whose target is ``gone`` (and older than ``max_age``); ``only``:
    look at that one name. Under the names lock, so that a claim made after another releaser's
    check is never the one unlinked (claims themselves need no lock: a symlink is atomic)."""
    released = []
    now = time.time()
    with contextlib.suppress(FileNotFoundError), file_lock(layout.root / NAMES_LOCK):
        entries = [layout.names / only] if only else [
            Path(e.path) for e in os.scandir(layout.names)]
        for path in entries:
            try:
                target = os.readlink(path)
                age = now - os.lstat(path).st_mtime
            except OSError:
                continue
            if max_age is not None and age < max_age:
                continue
            if gone(target):  # type: ignore[operator]
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    released.append(path)
    return released


def _dangling(layout: Layout, target: str) -> bool:
    # a create claims the name, then fills .tmp-<id>, then renames it to <id>
    return not (layout.containers / target).exists() and not (
        layout.containers / f".tmp-{target}").exists()


def release_stale_name(layout: Layout, name: str, *, max_age: float = STALE_AGE) -> bool:
    """Release the claim on ``name`` of a create that never finished (killed): its container
    folder does not exist and the claim is older than any create takes."""
    return bool(_release_names(layout, lambda target: _dangling(layout, target),
                               max_age=max_age, only=name))


def _remove_tree(path: Path) -> None:
    # rmtree would walk into a mount and delete what it shows: unmount first
    for point in sorted(mounts.mounted_under(path), key=len, reverse=True):
        mounts.unmount(Path(point))
    shutil.rmtree(path, ignore_errors=True)


def sweep_strays(layout: Layout, *, max_age: float = STALE_AGE) -> list[Path]:
    """Remove what interrupted writes, creates and removals left; return it."""
    removed: list[Path] = []
    for folder in (layout.root, layout.root / "networks", layout.root / "volumes"):
        removed += remove_stale_temporaries(folder, max_age=max_age)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(layout.root / "volumes"):
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                removed += remove_stale_temporaries(Path(entry.path), max_age=max_age)
    now = time.time()
    try:
        entries = list(os.scandir(layout.containers))
    except FileNotFoundError:
        entries = []
    for entry in entries:
        path = Path(entry.path)
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.startswith(".trash-"):
            # a removal renames the folder only once its container is cleaned up; a second
            # rmtree running alongside the remover's own is harmless
            _remove_tree(path)
            removed.append(path)
        elif entry.name.startswith(".tmp-"):
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat(follow_symlinks=False).st_mtime >= max_age:
                    _remove_tree(path)
                    removed.append(path)
        elif ID_RE.match(entry.name):
            removed += remove_stale_temporaries(path, max_age=max_age)

    removed += _release_names(layout, lambda target: _dangling(layout, target),
                              max_age=max_age)
    return removed
