"""kombu's filesystem transport, made safe for several worker processes on one machine.

The stock channel writes a message in place (a consumer can pick up a half-written file) and
claims one with ``shutil.move`` into the system temp folder (a copy, not an atomic rename, when
that folder is on another filesystem, so two workers can both take it). Here a message is written
to a hidden temp name and renamed into the queue folder, and a consumer claims it with an atomic
rename into a ``claimed`` folder beside it: exactly one process wins each message.
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from itertools import count
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

_SEQUENCE = count()


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # Consumers take the names in sorted order: nanoseconds and this process's own count keep its
        # messages first in, first out (kombu's millisecond stamp left puts within one millisecond
        # in the order of their random suffix).
        name = f"{monotonic_ns():020d}_{next(_SEQUENCE):010d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            raise ChannelError(f"cannot add {final!r} to the queue folder") from exc

    def _get(self, queue: str) -> Any:
        suffix = f".{queue}.msg"
        claimed_dir = os.path.join(self.data_folder_in, "..", "claimed")
        os.makedirs(claimed_dir, exist_ok=True)
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or not name.endswith(suffix) or name.partition(".")[2] != f"{queue}.msg":
                continue
            claimed = os.path.join(claimed_dir, f"{os.getpid()}-{name}")
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another worker took it
            try:
                with open(claimed, "rb") as fh:
                    payload = fh.read()
            finally:
                os.unlink(claimed)
            return loads(bytes_to_str(payload))
        raise Empty()

    def _size(self, queue: str) -> int:
        suffix = f".{queue}.msg"
        return sum(1 for n in os.listdir(self.data_folder_in) if n.endswith(suffix) and not n.startswith("."))


class Transport(filesystem.Transport):
    Channel = Channel
