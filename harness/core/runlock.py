"""One writer per run folder, one computer per stage-cache key: `flock` locks on small files.

A run folder's writer holds `RUN/.lock` (taken by `RunStore`, harness/core/store.py); a second
process that wants to write the same folder is refused at once with `RunLocked`, whose one
line names the holder (pid, host, command) written into the lock file. A stage-cache key is
claimed by blocking on `CACHE/.<key>.lock` (harness/run/stage_cache.py): the second process waits,
then finds the key published. The kernel drops an flock when its process dies, `kill -9`
included, so a dead holder never blocks the next run; the file it leaves behind is reused.

Within one process the same lock is re-entrant: a second `fcntl.flock` on a new descriptor of
the same file would conflict with the first one (even in the same process), so the locks this
process holds are counted in a registry keyed by the lock file's resolved path.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

RUN_LOCK = ".lock"


class RunLocked(RuntimeError):
    """Another process is writing this run folder (the CLI: one `error:` line, exit 1)."""


class _Held:
    __slots__ = ("fd", "count", "pid")

    def __init__(self, fd: int):
        self.fd, self.count, self.pid = fd, 0, os.getpid()


_held: dict[str, _Held] = {}  # resolved lock path -> this process's descriptor and holders


def _command() -> list[str]:
    """This process's command line as typed: `selm-bench train-and-eval ...`, `python -m ...`."""
    if Path(sys.argv[0]).name == "selm-bench" or not getattr(sys, "orig_argv", None):
        argv = list(sys.argv) or ["python"]
    else:
        argv = list(sys.orig_argv)
        if len(argv) > 1 and not argv[1].startswith("-"):
            argv[1] = Path(argv[1]).name  # a script
    return [Path(argv[0]).name or argv[0], *argv[1:]]  # not the venv's absolute path


def holder_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(_command()),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process (it has not written its pid yet)"
    command = " ".join(str(info.get("command") or "?").split())
    if len(command) > 160:
        command = command[:157] + "..."
    return f"pid {info.get('pid')} on {info.get('host')} ({command}, since {info.get('since')})"


def _read_info(fd: int) -> dict[str, Any] | None:
    """What the holder wrote; it writes right after locking, so an empty file is retried briefly."""
    for _ in range(20):
        try:
            data = os.pread(fd, 4096, 0)
            if data:
                return json.loads(data.decode())
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return None


def _write_info(fd: int) -> None:
    data = (json.dumps(holder_info()) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _key(path: Path) -> str:
    return str(Path(os.path.abspath(path.parent)).resolve() / path.name)


def _entry(key: str) -> _Held | None:
    held = _held.get(key)
    if held is not None and held.pid != os.getpid():  # inherited through fork: the parent's, not ours
        _held.clear()
        return None
    return held


class Lock:
    """A held lock; `release()` once (later calls do nothing). The last release in this process
    removes the file and closes the descriptor, which drops the flock."""

    def __init__(self, key: str):
        self.key, self.released = key, False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        held = _entry(self.key)
        if held is None:
            return
        held.count -= 1
        if held.count <= 0:
            _drop(self.key, held)


def moved(lock: Lock, path: Path) -> None:
    """The locked file was renamed to `path` (its folder swapped into place): the flock stays on
    the same file, this process's registry follows it."""
    key = _key(Path(path))
    _held[key] = _held.pop(lock.key)
    lock.key = key


def _drop(key: str, held: _Held) -> None:
    _held.pop(key, None)
    try:
        if os.path.samestat(os.fstat(held.fd), os.stat(key)):
            os.unlink(key)  # while still locked: a waiter on this file sees it gone and opens a new one
    except OSError:
        pass
    os.close(held.fd)


def acquire(path: Path, wait: bool, on_wait: Callable[[dict[str, Any] | None], None] | None = None) -> Lock:
    """Lock `path` (created if missing). Busy and not `wait`: raise BlockingIOError whose
    `holder` is what the holder wrote. With `wait`: call `on_wait(holder)` once, then block."""
    path = Path(path)
    key = _key(path)
    held = _entry(key)
    if held is None:
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            fd = os.open(key, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as e:
                    info = _read_info(fd)
                    if not wait:
                        e.holder = info  # type: ignore[attr-defined]
                        raise
                    if on_wait is not None and not told:
                        on_wait(info)
                        told = True
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.path.samestat(os.fstat(fd), os.stat(key))
                except FileNotFoundError:
                    current = False
            except BaseException:
                os.close(fd)
                raise
            if current:
                break
            os.close(fd)  # its holder removed the file on release: lock the one at the path now
        _write_info(fd)
        held = _held[key] = _Held(fd)
    held.count += 1
    return Lock(key)


def lock_run(folder: Path) -> Lock:
    """The writer's lock on a run folder (created if missing), or RunLocked at once."""
    folder = Path(folder)
    try:
        return acquire(folder / RUN_LOCK, wait=False)
    except BlockingIOError as e:
        raise RunLocked(f"{folder}: another command is writing this run folder: "
                        f"{describe_holder(getattr(e, 'holder', None))}; wait for it to finish, "
                        f"or use another folder") from None


def run_folder_of(path: Path) -> Path | None:
    """The run folder `path` is in (the nearest folder from it up with a manifest.json), if any."""
    path = Path(path).absolute()
    for folder in (path, *path.parents):
        if (folder / "manifest.json").is_file():
            return folder
    return None


_kept: list[Lock] = []


def hold_run(folder: Path) -> Lock:
    """`lock_run` for the rest of this process, for a command that writes into a run folder
    without a RunStore (judge, import, report): `hold_run(run_folder_of(target) or target)`."""
    lock = lock_run(folder)
    _kept.append(lock)
    return lock


def release_held() -> None:
    """Release what `hold_run` took (at the end of the command, so an in-process caller such as a
    test or a notebook is not left holding the folder, and no lock file stays behind)."""
    while _kept:
        _kept.pop().release()


@atexit.register
def _release_all() -> None:
    """At exit, remove the lock files this process holds (the kernel drops the locks anyway)."""
    for key, held in list(_held.items()):
        if held.pid == os.getpid():
            _drop(key, held)
