"""The pty relay of ``exec -t`` without a terminal: newlines as Docker's output has them."""

from __future__ import annotations

import os

from engine.host.pty import _LineEnds, copy_out, spawn


def test_newlines_made_twice_by_runcs_race_are_made_once() -> None:
    ends = _LineEnds()
    out = ends.feed(b"a\r\r\nb\r") + ends.feed(b"\r\nc\r\n") + ends.feed(b"d\r") + ends.end()
    assert out == b"a\r\nb\r\nc\r\nd\r"


def test_a_process_gets_a_terminal_and_its_output_is_copied() -> None:
    proc, master = spawn(["sh", "-c", "[ -t 0 ] && [ -t 1 ] && printf 'on a tty'; exit 3"])
    r, w = os.pipe()
    try:
        assert copy_out(proc, master, w) == 3
        os.close(w)
        assert os.read(r, 100) == b"on a tty"
    finally:
        os.close(r)
