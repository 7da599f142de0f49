"""The image verbs: import, busybox, ls, rm, inspect.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import InvalidParameter, NotFound
from .common import _each, _engine
from .container import cmd_inspect
from .output import _ago, _out, _table, human_size


def _max_size(text: str) -> int:
    from ..store.config import parse_size

    size = parse_size(text, "--max-size")
    if not size:
        raise InvalidParameter(f"invalid --max-size: {text!r}: want a size such as 8g")
    return size


def cmd_image_import(args: argparse.Namespace) -> int:
    eng = _engine(args)
    src = args.source
    name = args.name or _image_name_from(src)
    limit = {"max_bytes": _max_size(args.max_size)} if args.max_size else {}
    if src == "-":
        image = eng.images.import_tar(sys.stdin.buffer, name, **limit)
    elif os.path.isdir(src):
        image = eng.images.import_dir(src, name, **limit)
    elif os.path.exists(src):
        image = eng.images.import_tar(src, name, **limit)
    else:
        raise NotFound(f"cannot import {src}: no such file or directory")
    _out(image.id)
    return 0


def _image_name_from(src: str) -> str:
    """``docker import`` leaves an image unnamed; our images need a name: the file's stem."""
    import re

    base = os.path.basename(os.path.normpath(src)) if src != "-" else ""
    base = re.sub(r"\.(tar(\.(gz|bz2|xz))?|tgz|tbz2?|txz)$", "", base).lower()
    base = re.sub(r"[^a-z0-9_.-]+", "-", base).strip("-._")
    return base or "imported"


def cmd_image_busybox(args: argparse.Namespace) -> int:
    eng = _engine(args)
    _out(eng.images.busybox(args.name).id)
    return 0


def cmd_image_ls(args: argparse.Namespace) -> int:
    eng = _engine(args)
    images = sorted(eng.images.list(), key=lambda img: img.created, reverse=True)
    if args.quiet:
        for img in images:
            _out(img.id if args.no_trunc else img.short_id)
        return 0
    now = time.time()
    _table(["NAME", "ID", "CREATED", "SIZE"],
           [[img.name, img.id if args.no_trunc else img.short_id, _ago(img.created, now),
             human_size(img.size)] for img in images])
    return 0


def cmd_image_rm(args: argparse.Namespace) -> int:
    eng = _engine(args)

    def remove(ref: str) -> None:
        img = eng.image_remove(ref)
        _out(f"Untagged: {img.name}")
        _out(f"Deleted: {img.id}")

    return _each(args.images, remove, echo=False)


def cmd_image_inspect(args: argparse.Namespace) -> int:
    args.objects, args.type = args.images, "image"
    return cmd_inspect(args)
