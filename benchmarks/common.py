"""Shared by the benchmark scripts: the same runtime environment as the CLI (offline, quiet,
OpenMP threads that sleep instead of spinning), set before torch is imported."""

from __future__ import annotations

import os


def setup_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("SELM_BENCH_QUIET", "1")
    from selm_bench.harness.core.progress import quiet_libraries

    quiet_libraries()
