"""The run store: atomic files, stage records keyed by their inputs, and the manifest.

A stage is done when `<stage dir>/stage.json` says so with the same key; the key hashes
the stage's resolved config and the keys of its inputs, so a change upstream redoes
everything downstream and nothing else.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

PACKAGES = ["torch", "transformers", "trl", "datasets", "accelerate", "lm_eval", "alpaca_eval", "fschat", "selm-bench"]


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Build a directory in a temp sibling, then swap it in whole (checkpoints, data)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a killed run (kill -9 skips cleanup)
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state() -> dict[str, Any]:
    """The code's commit and whether tracked files differ from it (results from a dirty tree are not that commit's)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as it is set now (huggingface_hub reads it once, when imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cached(repo: str, repo_type: str = "model") -> bool | None:
    """Whether a hub repo is in the local hub cache as it is now (None: huggingface_hub missing);
    a dataset also counts when `datasets` holds it in its own cache."""
    try:
        from huggingface_hub import constants, scan_cache_dir
    except ImportError:
        return None
    if repo_type == "dataset":  # `datasets`' own cache, found as it finds it (importing it takes seconds)
        own = os.environ.get("HF_DATASETS_CACHE") or Path(os.environ.get("HF_HOME") or constants.HF_HOME) / "datasets"
        if (Path(own) / repo.replace("/", "___")).is_dir():
            return True
    try:  # the cache folder as it is now (scan_cache_dir's default is the one its module was imported with)
        return any(r.repo_id == repo and r.repo_type == repo_type for r in scan_cache_dir(constants.HF_HUB_CACHE).repos)
    except Exception:  # noqa: BLE001 - no cache folder yet: nothing cached
        return False


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunStore:
    """One run directory: config, manifest, stage records and their outputs."""

    def __init__(self, root: Path, force: bool = False):
        self.root = Path(root)
        self.force = force
        self.manifest_path = self.root / "manifest.json"
        self._lock: Any = None
        self._forced: set[str] = set()
        self._git: dict[str, Any] | None = None
        self.cache: Any = None  # a StageCache shared with other runs (harness/run/stage_cache.py), if any
        if self.root.is_dir() and any(self.root.iterdir()):
            self._take_lock()  # an existing run: refused at once if another process writes it
        self.manifest: dict[str, Any] = read_json(self.manifest_path, {}) or {}

    def _take_lock(self) -> None:
        """One writer per run folder (harness/core/runlock.py), held until `close()`, this store is
        garbage, or the process exits; raises RunLocked naming the holder. A new or empty folder
        is locked at `start()`, so a command that stops before it leaves no folder behind."""
        if self._lock is not None:
            return
        from selm_bench.harness.core import runlock

        self._lock = runlock.lock_run(self.root)
        weakref.finalize(self, self._lock.release)
        if self.manifest_path.is_file() and getattr(self, "manifest", None) is not None:
            # another writer finished between this store's first read and its lock: keep its records
            self.manifest = {**(read_json(self.manifest_path, {}) or {}), **self.manifest}

    def close(self) -> None:
        """Release the run folder's lock (idempotent)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self, config: dict[str, Any], seed: int, command: list[str]) -> None:
        import yaml

        self._git = git_state()
        fields = dict(packages=package_versions(), **self._git, seed=seed, python=platform.python_version(),
                      command=command, started=now(), finished=None)
        config_text = yaml.safe_dump(config, sort_keys=False)
        if self._lock is None:  # a new (or empty) folder: it appears whole, locked, with its config
            self._make_folder(config_text, {**self.manifest, "stages": {}, "created": now(), **fields})
        self.manifest.setdefault("stages", {})
        self.manifest.setdefault("created", now())  # the first invocation; `started` is this one
        self.manifest.update(fields)
        atomic_write_text(self.root / "config.yaml", config_text)
        self.save()

    def _make_folder(self, config_text: str, manifest: dict[str, Any]) -> None:
        """Build the run folder in a locked temp sibling and rename it into place, so no other
        command ever sees it half made (cli.check_run_folder wants a config and a manifest). If
        another process made it first, lock it as an existing run (RunLocked while it writes)."""
        from selm_bench.harness.core import runlock

        parent = self.root.parent
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(f".{self.root.name}.*.run.tmp"):  # left by a killed command
            try:
                if time.time() - stale.stat().st_mtime < 60:
                    continue  # perhaps being made now, not yet locked
                runlock.acquire(stale / runlock.RUN_LOCK, wait=False).release()
            except (BlockingIOError, OSError):
                continue  # another command is making it now
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self.root.name}.", suffix=".run.tmp"))
        lock = runlock.lock_run(tmp)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # as mkdir would make it (mkdtemp: owner only)
            atomic_write_text(tmp / "config.yaml", config_text)
            atomic_write_json(tmp / "manifest.json", manifest)
            os.rename(tmp, self.root)  # onto a missing or empty folder only
        except OSError as e:
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            self._take_lock()
            return
        runlock.moved(lock, self.root / runlock.RUN_LOCK)
        self._lock = lock
        weakref.finalize(self, lock.release)

    def finish(self) -> None:
        self.manifest["finished"] = now()
        self.save()

    def save(self) -> None:
        self._take_lock()
        atomic_write_json(self.manifest_path, self.manifest)

    def stage_dir(self, name: str) -> Path:
        return self.root / name

    def is_done(self, name: str, key: str) -> bool:
        rec = read_json(self.stage_dir(name) / "stage.json")
        if self.force and name not in self._forced:
            return False
        return bool(rec) and rec.get("status") == "done" and rec.get("key") == key

    def record(self, name: str, key: str, status: str, started: float, **extra: Any) -> None:
        rec = {"stage": name, "key": key, "status": status, "duration_s": round(time.time() - started, 3), **extra}
        if status == "done":  # provenance of this stage's outputs, kept when later runs skip it
            self._take_lock()
            rec.update(self._git or git_state(), ended=now())
            atomic_write_json(self.stage_dir(name) / "stage.json", rec)
            self._forced.add(name)
        self.manifest.setdefault("stages", {})[name] = {**rec, "ended": now()}
        self.save()
