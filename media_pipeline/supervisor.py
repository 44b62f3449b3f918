"""Runs the processes of ``media-pipeline serve`` and stops every one of them, every time.

Each child runs in a session of its own, so a terminal's Ctrl-C reaches serve alone and serve
stops the children in order; the child also leads a process group that holds its own children
(gunicorn's workers, Celery's pool), so killing the group takes the whole tree.

- SIGINT and SIGTERM only ask for a stop. The handler records the signal and returns, and the
  loop acts on it: a second or third signal (GNU make passes a group's SIGTERM on to serve, so
  serve gets two; a user presses Ctrl-C twice) cannot interrupt the shutdown halfway. Each child
  gets one SIGTERM and the grace period to stop its own children; a group still there after it is
  killed, and only that makes the exit status non-zero.
- Each child asks the kernel for a SIGTERM when serve dies (``PR_SET_PDEATHSIG``), so a SIGKILLed
  serve still stops its children, and each of them stops its own as on any SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Callable, Mapping, Sequence

GRACE_SECONDS = 20.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Loaded here, in the parent: between fork and exec the child should only make the one call.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class Supervisor:
    def __init__(self, commands: Mapping[str, Sequence[str]], env: Mapping[str, str] | None = None,
                 grace: float = GRACE_SECONDS, poll: float = 0.2) -> None:
        self.commands = {name: list(command) for name, command in commands.items()}
        self.env = dict(env) if env is not None else None
        self.grace = grace
        self.poll = poll
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.signals: list[int] = []  # appended by the handler, acted on by the loop

    def run(self, on_started: Callable[[], None] | None = None) -> int:
        """Start the children, wait for a stop signal or for a child to exit, stop them all.
        0 after a signal; a child's own exit status (or 1) when it exited first; 1 when a child
        had to be killed."""
        for signum in STOP_SIGNALS:
            # Installed before the first child starts, so no signal can leave a child behind; and
            # explicitly, as a process started in the background by a script inherits SIGINT ignored.
            signal.signal(signum, self._record)
        code = 1
        try:
            for name, command in self.commands.items():
                if self.signals:
                    break
                self.children[name] = self._spawn(command)
            if not self.signals and on_started is not None:
                on_started()
            code = self._wait()
        finally:  # also when a child cannot be started: the ones already running stop
            if self._stop():
                code = code or 1
            # Ignored from here on, not reset: Python puts the default action back for a signal with a
            # handler as it exits, and one more Ctrl-C then would end serve by that signal, not its status.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
        return code

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        # Nothing else here: printing could re-enter a print the signal interrupted, and raising
        # would break off whatever the loop was doing, the stop included.
        self.signals.append(signum)

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, env=self.env, start_new_session=True, preexec_fn=_dies_with(os.getpid()))

    def _wait(self) -> int:
        while not self.signals:
            for name, child in self.children.items():
                if child.poll() is not None:
                    print(f"media-pipeline: the {name} (pid {child.pid}) exited with status {child.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    return child.returncode if child.returncode > 0 else 1
            time.sleep(self.poll)
        print(f"media-pipeline: {signal.Signals(self.signals[0]).name}: stopping", flush=True)
        return 0

    def _stop(self) -> bool:
        """SIGTERM to each child, up to the grace period for every group to empty, then SIGKILL
        to the groups still there. Whether any had to be killed."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        before, said = len(self.signals), False
        while time.monotonic() < deadline and any(map(_running, self.children.values())):
            if not said and len(self.signals) > before:  # said once: a key held down would fill the terminal
                said = True
                print(f"media-pipeline: already stopping; the children have {deadline - time.monotonic():.0f} s more",
                      flush=True)
            time.sleep(0.05)
        killed = False
        for name, child in self.children.items():
            if _running(child):
                print(f"media-pipeline: the {name} (pid {child.pid}) did not stop within {self.grace:.0f} s; "
                      "killing its process group", file=sys.stderr, flush=True)
                _kill_group(child.pid)
                killed = True
            child.wait()
        return killed


def _running(child: subprocess.Popen[bytes]) -> bool:
    """The child, or anything left in its process group (a grandchild it did not stop)."""
    if child.poll() is None:
        return True
    try:
        os.killpg(child.pid, 0)
    except (ProcessLookupError, PermissionError):  # empty (or the number is another user's group now)
        return False
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it emptied just now


def _dies_with(parent: int) -> Callable[[], None] | None:
    """The child's step between fork and exec: SIGTERM when the parent dies. The kernel sends it
    when the thread that forked the child ends, which for serve is its main thread, i.e. serve."""
    if _libc is None:
        return None

    def preexec() -> None:
        if _libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:
            raise ChildProcessError("serve died before this child could ask to die with it")

    return preexec
