"""A pseudo-terminal of our own for a foreground ``runc exec --tty`` when we have none.

runc in the foreground puts its own terminal in raw mode and copies between it and the
container's: without one (``corral exec -t`` from a script, stdin not a TTY) it fails with
"open /dev/tty: no such device or address". Docker allows ``-t`` without ``-i`` there, so runc
gets a pty pair made here as its controlling terminal, and what it writes is copied to ours.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import subprocess
import termios
import tty


def spawn(args: list[str]) -> tuple[subprocess.Popen, int]:
    """Start ``args`` on a new pty as its controlling terminal; the process and the master."""
    master, slave = os.openpty()
    # nothing echoed or translated before runc sets the modes it wants, as on any terminal
    tty.setraw(slave)

    def take_terminal() -> None:  # in the child, after setsid: the slave becomes its ctty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True, preexec_fn=take_terminal)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return proc, master


class _LineEnds:
    """runc clears ONLCR on the container's terminal once it holds it, and leaves the \r\n to
    ours; a command that writes before that (``echo hi``, one time in five) has its newlines
    made twice, \r\r\n. Made once again here, as Docker's output always is (a lone \r\r\n
    cut between two reads is joined first)."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        data = self.held + data
        keep = len(data) - len(data.rstrip(b"\r"))
        data, self.held = (data[:-keep], data[-keep:]) if keep else (data, b"")
        return data.replace(b"\r\r\n", b"\r\n")

    def end(self) -> bytes:
        held, self.held = self.held, b""
        return held


def copy_out(proc: subprocess.Popen, master: int, out_fd: int = 1) -> int:
    """Copy the pty's output to ``out_fd`` until the process has ended; its exit status."""
    ends = _LineEnds()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:  # EIO: no writer left on the other side
                        raise
                    data = b""
                if data:
                    _write_all(out_fd, ends.feed(data))
                    continue
                break
            if proc.poll() is not None:
                # ended: what it wrote last is in the pty already
                os.set_blocking(master, False)
                try:
                    while data := os.read(master, 65536):
                        _write_all(out_fd, ends.feed(data))
                except OSError:
                    pass
                break
        _write_all(out_fd, ends.end())
    finally:
        os.close(master)
    return proc.wait()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
