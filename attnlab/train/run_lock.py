"""The lock that makes a run folder belong to one run while it writes.

A run holds ``<out_dir>/.attnlab-run.lock`` for as long as it writes there: an exclusive
``flock`` on the open file, whose content names the holder (pid, host, start time, command).
A second writer finds the lock held and gets :class:`RunLockedError` naming the holder.
The kernel drops a ``flock`` when its process dies, however it dies (SIGKILL, a crash), so
a lock file left behind by a dead process is *stale*: the next run takes it over and says
so (a warning naming the dead holder). Nothing here depends on PIDs being unique over time.

``flock`` is advisory and local to a machine: it protects against two attnlab runs on one
host (or on a filesystem whose server honours ``flock``, as Linux NFS v4 does), not against
other programs writing into the folder.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

__all__ = ["RunLock", "RunLockedError", "LOCK_NAME"]

#: name of the lock file inside a run folder
LOCK_NAME = ".attnlab-run.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock (the message names it)."""


def _describe(holder: dict) -> str:
    if not holder:
        return "an unknown process (the lock file is empty: it is being taken right now)"
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')} "
            f"({holder.get('command', '?')})")


def _read_holder(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return holder if isinstance(holder, dict) else {}


class RunLock:
    """An exclusive lock on the run folder ``out_dir`` (see the module docstring).

    ``acquire()`` takes it (RunLockedError if a live process holds it; a stale lock of a dead
    process is taken over with a warning); ``release()`` drops it and removes the file. Also a
    context manager. ``holder`` is what the file says about this run once acquired.
    """

    def __init__(self, out_dir: str | Path):
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None
        self.holder: dict = {}

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the lock; RunLockedError naming the holder if another live process has it."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):  # retries only when the file is replaced between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = _read_holder(self.path)
                mine = " (this process: finish() or close() the other Trainer first)" \
                    if holder.get("pid") == os.getpid() else ""
                raise RunLockedError(
                    f"out_dir: expected a run folder no other run is writing to, received {self.path.parent} "
                    f"locked by {_describe(holder)}{mine}; wait for that run to end or choose another folder"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            # the previous holder removed the file after we opened it: lock the new one instead
            os.close(fd)
        else:  # pragma: no cover - a file replaced 100 times in a row
            raise RunLockedError(f"out_dir: could not lock {self.path}: it keeps being replaced")
        stale = _read_holder(self.path)
        if stale:
            warnings.warn(f"{self.path.parent}: took over the stale run lock of {_describe(stale)}, "
                          "which is no longer running (it ended without releasing it)", stacklevel=3)
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                       "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.holder).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock and remove the file (a no-op if not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # while still locked: nobody can take the old file over
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # an abandoned lock object must not keep the folder locked until the process exits
        if getattr(self, "_fd", None) is not None:
            self.release()
