"""A content-addressed stage cache shared by runs (a sweep's cells): `<cache>/<stage key>/`.

A finished stage is published under its key (hard links, so no second copy on disk); a run that
plans a stage with the same key and the same code/library env takes it from there instead of
recomputing it. Keys hash the whole spec and never a run's own location, so two runs share
exactly the stages whose inputs are the same. Files that hold the stage folder's absolute path
(lm-eval task YAMLs, the judge context) are rewritten for where they land.

Two processes (two cells, two sweeps on one `--cache`) that miss the same key compute it once:
a miss claims the key (an flock on `<cache>/.<key>.lock`, harness/core/runlock.py), so the second
one waits, looks again and finds it published. `publish` releases the claim; so does the next
`lookup` (a stage that failed, or is not published), this cache object's end, or the process's
(the kernel drops the lock of a killed process).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from selm_bench.harness.core import runlock
from selm_bench.harness.run.evaluate import relocate_task_files
from selm_bench.harness.core.store import read_json


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        shutil.copy2(src, dst)  # another filesystem, or links not allowed


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, copy_function=_link_or_copy, symlinks=True)


def _release(claims: dict[str, runlock.Lock]) -> None:
    while claims:
        claims.popitem()[1].release()


def _say_waiting(key: str, holder: dict[str, Any] | None) -> None:
    from selm_bench.harness.core.progress import say

    say(f"[dim]waiting[/dim] for stage {key}: {runlock.describe_holder(holder)} is computing it")


class StageCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._claims: dict[str, runlock.Lock] = {}  # keys this object missed and may compute
        weakref.finalize(self, _release, self._claims)

    def entry(self, key: str) -> Path:
        return self.root / key

    def claim_path(self, key: str) -> Path:
        return self.root / f".{key}.lock"

    def lookup(self, key: str, env: dict | None) -> Path | None:
        """The cached folder of a stage finished with this key and this env, else None. A miss
        claims the key: while another process holds its claim (computing it), this waits, then
        looks again. The caller computes and `publish`es it; a later lookup drops the claim."""
        for other in [k for k in self._claims if k != key]:  # one claim at a time: no two waits cross
            self._claims.pop(other).release()
        found = self._find(key, env)
        if found is not None or key in self._claims:
            return found
        self._claims[key] = runlock.acquire(self.claim_path(key), wait=True,
                                            on_wait=lambda holder: _say_waiting(key, holder))
        found = self._find(key, env)  # published while this waited
        if found is not None:
            self._claims.pop(key).release()
        return found

    def _find(self, key: str, env: dict | None) -> Path | None:
        folder = self.entry(key)
        rec = read_json(folder / "stage.json")
        if not rec or rec.get("status") != "done" or rec.get("key") != key or rec.get("judge_failures"):
            return None
        if env is not None and rec.get("env") != env:
            return None  # made by other code or libraries: not this stage's output any more
        return folder

    def publish(self, key: str, folder: Path) -> None:
        """Add a finished stage folder under its key (first writer wins; atomic rename), then
        release this key's claim."""
        try:
            self._publish(key, folder)
        finally:
            claim = self._claims.pop(key, None)
            if claim is not None:
                claim.release()

    def _publish(self, key: str, folder: Path) -> None:
        if self._find(key, None) is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key}.", suffix=".tmp"))
        try:
            tmp.rmdir()
            _copy_tree(folder, tmp)
            relocate_task_files(tmp, self.entry(key), src=folder)
            try:
                os.replace(tmp, self.entry(key))
            except OSError:
                if self._find(key, None) is None:
                    raise
                # else a concurrent run published the same key first: theirs stays
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def restore(self, key: str, into: Path) -> None:
        """Copy the cached stage into `into`, an empty temp folder the caller swaps in (and
        relocates, as for a stage it ran itself)."""
        into.rmdir()
        _copy_tree(self.entry(key), into)
        relocate_task_files(into, into, src=self.entry(key))
