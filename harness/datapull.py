"""`selm-bench data pull`: the real suites' data from their canonical public sources, pinned
to a commit and checked against a SHA-256, cached where the suites look when no
`--data-dir` is given (`$SELM_BENCH_DATA`, else `~/.cache/selm-bench/data`).

What a suite's data is, where it comes from and how it is unpacked is the suite's own
(`register_suite(..., data_sources=(Artefact(...), ...), prepare_data=..., pull_by_default=...)`
in its module under evals/); this module fetches and verifies.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from selm_bench.harness.core.registry import Artefact
from selm_bench.harness.core.store import atomic_write_json

# Names that moved into their suite's module, still importable from here for older callers.
_MOVED = {"BT_PASSWORD": "selm_bench.evals.brainteaser:ZIP_PASSWORD",
          "BT_MEMBERS": "selm_bench.evals.brainteaser:ZIP_MEMBERS",
          "convert_brainteaser": "selm_bench.evals.brainteaser:convert_data",
          "load_object_npy": "selm_bench.evals.brainteaser:load_object_npy",
          "_plain": "selm_bench.evals.brainteaser:_plain"}


class DataPullError(RuntimeError):
    """An artefact could not be fetched or verified: one line naming it and the alternative."""


def all_artefacts() -> tuple[Artefact, ...]:
    """Every registered suite's data sources, in the suites' order."""
    from selm_bench.harness.core import registry

    return tuple(a for suite in registry.suites() for a in suite.data_sources)


def pullable() -> list[str]:
    """The suites with data to pull, in their order."""
    from selm_bench.harness.core import registry

    return [suite.name for suite in registry.suites() if suite.data_sources]


def default_suites() -> list[str]:
    """What a bare `selm-bench data pull` fetches."""
    from selm_bench.harness.core import registry

    return [suite.name for suite in registry.suites() if suite.data_sources and suite.pull_by_default]


def __getattr__(name: str) -> Any:
    if name == "ARTEFACTS":  # computed: the suites register their sources
        return all_artefacts()
    if name == "PULLABLE":
        return tuple(pullable())
    if name in _MOVED:
        module, _, attr = _MOVED[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_dir() -> Path:
    return Path(os.environ.get("SELM_BENCH_DATA") or Path.home() / ".cache" / "selm-bench" / "data")


def pulled_dir() -> Path | None:
    """The pulled data folder, if `data pull` has filled it (the suites' default without --data-dir)."""
    d = default_dir()
    return d if (d / "pulled.json").is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(a: Artefact, to: Path, timeout: float = 30.0) -> str:
    """Download `a` into `to/a.dest` unless a verified copy is there: 'cached' or 'downloaded'."""
    dest = to / a.dest
    if dest.is_file() and _sha256(dest) == a.sha256:
        return "cached"
    url = os.environ.get("SELM_BENCH_DATA_URL", "").rstrip("/")  # a mirror with the same layout (tests: loopback)
    url = f"{url}/{a.dest}" if url else a.url
    alternative = f"download it from {a.url} yourself and pass --data-dir DIR (the file at DIR/{a.dest})"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                f.write(block)
        if h.hexdigest() != a.sha256:
            raise DataPullError(f"{a.suite}: {a.dest} from {url} does not match its pinned SHA-256 "
                                f"(got {h.hexdigest()[:12]}..., expected {a.sha256[:12]}...); {alternative}")
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataPullError(f"{a.suite}: cannot fetch {a.dest} from {url} ({reason}); {alternative}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return "downloaded"


def pull(suites: list[str], to: Path | None = None, artefacts: tuple[Artefact, ...] | None = None) -> dict[str, str]:
    """Fetch every artefact of `suites` (default: every suite's registered sources), then each
    named suite's `prepare_data` where its artefacts were among them; {dest: 'cached' |
    'downloaded'}. Writes `pulled.json` last."""
    from selm_bench.harness.core import registry

    to = Path(to) if to else default_dir()
    known = pullable()
    for s in suites:
        if s not in known:
            raise DataPullError(f"{s}: not a suite with data to pull (pullable: {', '.join(known)})")
    artefacts = all_artefacts() if artefacts is None else artefacts
    done = {a.dest: fetch(a, to) for a in artefacts if a.suite in suites}
    for suite in registry.suites():
        if suite.prepare_data and suite.name in suites and any(a.suite == suite.name for a in artefacts):
            suite.prepare_data(to)
    manifest = {a.dest: {"url": a.url, "sha256": a.sha256} for a in artefacts if (to / a.dest).is_file()}
    atomic_write_json(to / "pulled.json", manifest)
    return done
