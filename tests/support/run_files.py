"""Hand-made run folders for the leaderboard, compare and sweep tests: JSON files, one suite result
(evals/<checkpoint>/<suite>/metrics.json) and stand-in registry entries for the suites they name."""

from __future__ import annotations

import json
from pathlib import Path

# the headline each suite registers (tiny-world accuracy, mt-bench score, brainteaser overall)
SUITE_HEADLINES = (("tiny-world", "accuracy"), ("mt-bench", "score"), ("brainteaser", "overall"))


def write_json(path: Path, data) -> Path:
    """Writes `data` (a str as is, anything else as JSON) to `path`, making its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def write_result(run: Path, rel: str, suite: str, checkpoint: str, metrics: dict, **extra) -> str:
    """One suite result at run/rel/metrics.json; returns `rel`, as the manifest lists it."""
    write_json(run / rel / "metrics.json", {"suite": suite, "checkpoint": checkpoint, "metrics": metrics, **extra})
    return rel


def stand_in_suites(monkeypatch):
    """Registry entries for tiny-world, mt-bench and brainteaser (their registered headlines, the mean
    of the item scores as their paired metric), so a test imports none of the real suites and their
    model libraries. Returns the registry module."""
    from selm_bench.harness.core import registry

    monkeypatch.setattr(registry, "load_all", lambda: None)
    for name, headline in SUITE_HEADLINES:
        monkeypatch.setitem(registry._ENTRIES["suite"], name,
                            registry.Entry("suite", name, None, "", headline=headline, paired=registry.mean_score))
    return registry
