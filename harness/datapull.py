"""`selm-bench data pull`: the real suites' data from their canonical public sources, pinned
to a commit and checked against a SHA-256, cached where the suites look when no
`--data-dir` is given (`$SELM_BENCH_DATA`, else `~/.cache/selm-bench/data`).

- mt-bench: FastChat's `fastchat/llm_judge/data/` (questions, GPT-4 reference answers, judge prompts).
- alpaca-eval: alpaca_eval's `results/gpt4_1106_preview/model_outputs.json` (the AlpacaEval 2.0
  evaluation set and its reference outputs). `df_gamed.csv` (length-controlled win rate) has
  no pinned checksum here and is not pulled: without it LC stays null, as documented.
- brainteaser: not pullable. Upstream ships an encrypted zip of pickled numpy arrays; this
  tool neither decrypts nor unpickles downloads. Its error line says how to use --data-dir.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.store import atomic_write_json

FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data"
ALPACA_EVAL = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20"


class DataPullError(RuntimeError):
    """An artefact could not be fetched or verified: one line naming it and the alternative."""


@dataclass(frozen=True)
class Artefact:
    suite: str
    dest: str  # path under the data folder, the layout `--data-dir` expects
    url: str
    sha256: str
    size: int


ARTEFACTS = (
    Artefact("mt-bench", "mt_bench/question.jsonl", f"{FASTCHAT}/mt_bench/question.jsonl",
             "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7", 48929),
    Artefact("mt-bench", "mt_bench/reference_answer/gpt-4.jsonl", f"{FASTCHAT}/mt_bench/reference_answer/gpt-4.jsonl",
             "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f", 51109),
    Artefact("mt-bench", "mt_bench/judge_prompts.jsonl", f"{FASTCHAT}/judge_prompts.jsonl",
             "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6", 10449),
    Artefact("alpaca-eval", "alpaca_eval/results/gpt4_1106_preview/model_outputs.json",
             f"{ALPACA_EVAL}/results/gpt4_1106_preview/model_outputs.json",
             "83db546b872ddebee8965fd05fa48461ee3c32bc695c62fb57f2d214ff741ec4", 1899765),
)
PULLABLE = ("mt-bench", "alpaca-eval")
NOT_PULLABLE = {"brainteaser": "upstream ships an encrypted zip of pickled numpy arrays, which this tool does not "
                               "decrypt or unpickle; put {SP,WP}_<split>.jsonl under DIR/brainteaser and pass --data-dir DIR"}


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


def pull(suites: list[str], to: Path | None = None, artefacts: tuple[Artefact, ...] = ARTEFACTS) -> dict[str, str]:
    """Fetch every artefact of `suites`; {dest: 'cached' | 'downloaded'}. Writes `pulled.json` last."""
    to = Path(to) if to else default_dir()
    for s in suites:
        if s in NOT_PULLABLE:
            raise DataPullError(f"{s}: no automatic download: {NOT_PULLABLE[s]}")
        if s not in PULLABLE:
            raise DataPullError(f"{s}: not a suite with data to pull (pullable: {', '.join(PULLABLE)})")
    done = {a.dest: fetch(a, to) for a in artefacts if a.suite in suites}
    manifest = {a.dest: {"url": a.url, "sha256": a.sha256} for a in artefacts if (to / a.dest).is_file()}
    atomic_write_json(to / "pulled.json", manifest)
    return done
