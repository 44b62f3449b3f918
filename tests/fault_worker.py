"""A real worker whose decoder misbehaves on marked files, for the crash and hang tests.

A JPEG whose comment holds ``mp-fault:segfault`` kills the worker child with SIGSEGV the way a
broken native decoder would; ``mp-fault:hang`` blocks every signal and sleeps, like a decoder
stuck in C code that the soft time limit cannot interrupt, so only the hard limit ends it.
Everything else goes through the real pipeline. Run as ``python -m tests.fault_worker worker ...``.
"""

from __future__ import annotations

import ctypes
import signal
import sys
import time
from typing import Any

from media_pipeline import cli, pipeline

MARK = b"mp-fault:"
_real_prepare = pipeline.prepare


def _misbehaving_prepare(data: bytes, *args: Any, **kwargs: Any) -> Any:
    head = data[:4096]
    if MARK + b"segfault" in head:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if MARK + b"hang" in head:
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.Signals))
        while True:
            time.sleep(3600)
    return _real_prepare(data, *args, **kwargs)


if __name__ == "__main__":
    pipeline.prepare = _misbehaving_prepare  # before the pool forks, so every child has it
    sys.exit(cli.main(sys.argv[1:]))
