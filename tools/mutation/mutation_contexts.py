"""pytest plugin for tools/mutation/mutation_sample.py's coverage map: each test's node id becomes the
coverage context of the lines it runs, in the test process (Coverage.switch_context) and in every
subprocess it starts (a per-test config in COVERAGE_PROCESS_START, read by coverage's .pth hook).
Each test's duration goes to $SELM_MUT_DIR/durations.jsonl. Loaded with `-p mutation_contexts`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import coverage
import pytest

OUT = Path(os.environ.get("SELM_MUT_DIR", "/tmp/selm-mut-map"))


def _subprocess_config(nodeid: str, n: int) -> Path:
    """A coverage config for the test's subprocesses: same data file, the test's node id as context."""
    path = OUT / "configs" / f"{n}.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    context = nodeid.replace("%", "%%").replace("\n", " ")
    path.write_text(f"[run]\ndata_file = {OUT / 'coverage'}\nparallel = true\nsource_pkgs = selm_bench\n"
                    f"context = {context}\n")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cov = coverage.Coverage.current()
    n = getattr(pytest_runtest_protocol, "count", 0) + 1
    pytest_runtest_protocol.count = n
    if cov is not None:
        cov.switch_context(item.nodeid)
    os.environ["COVERAGE_PROCESS_START"] = str(_subprocess_config(item.nodeid, n))
    t0 = time.perf_counter()
    yield
    with open(OUT / "durations.jsonl", "a") as f:
        f.write(json.dumps({"test": item.nodeid, "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
    if cov is not None:
        cov.switch_context("")
    os.environ.pop("COVERAGE_PROCESS_START", None)
