"""`selm-bench data pull`: the real suites' data from their canonical public sources, pinned
to a commit and checked against a SHA-256, cached where the suites look when no
`--data-dir` is given (`$SELM_BENCH_DATA`, else `~/.cache/selm-bench/data`).

- mt-bench: FastChat's `fastchat/llm_judge/data/` (questions, GPT-4 reference answers, judge prompts).
- alpaca-eval: alpaca_eval's `results/gpt4_1106_preview/model_outputs.json` (the AlpacaEval 2.0
  evaluation set and its reference outputs). `df_gamed.csv` (length-controlled win rate) has
  no pinned checksum here and is not pulled: without it LC stays null, as documented.
- brainteaser: the authors' `data/BTDATA.zip` (1171-jpg/BrainTeaser, pinned commit), an AES zip
  whose password the authors publish in their README (against crawlers), of numpy object
  arrays. The arrays are read with a restricted unpickler that accepts numpy's array
  reconstruction and nothing else, and written as `brainteaser/{SP,WP}_{train,test}.jsonl`;
  `demonstration.jsonl` comes from `Prompting/demonstration.npy`. The test answer keys in the
  zip are not extracted.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from selm_bench.harness.store import atomic_write_json

FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6d3e4beaab66f4d3f93db72541a4abab8af28d/fastchat/llm_judge/data"
ALPACA_EVAL = "https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/cd543a149df89434d8a54582c0151c0b945c3d20"
BRAINTEASER = "https://raw.githubusercontent.com/1171-jpg/BrainTeaser/4d164df75ba95682758248727bfc9d2746e598b7"
BT_PASSWORD = b"brainteaser"  # published in the authors' README
BT_MEMBERS = {"SP_train.npy": "SP_train.jsonl", "WP_train.npy": "WP_train.jsonl", "SP_test.npy": "SP_test.jsonl",
              "WP_test.npy": "WP_test.jsonl"}


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
    Artefact("brainteaser", "brainteaser/raw/BTDATA.zip", f"{BRAINTEASER}/data/BTDATA.zip",
             "3982996c23ab8c2b278e88792071c440a6c2f9af1ffc92b2d43a0152c425a6f5", 243885),
    Artefact("brainteaser", "brainteaser/raw/demonstration.npy", f"{BRAINTEASER}/Prompting/demonstration.npy",
             "27b68f6ecf721036ad25c2af7378f81ba2e147e0b899ba6e04faa31e5dc4094c", 2329),
)
PULLABLE = ("mt-bench", "alpaca-eval", "brainteaser")


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
        if s not in PULLABLE:
            raise DataPullError(f"{s}: not a suite with data to pull (pullable: {', '.join(PULLABLE)})")
    done = {a.dest: fetch(a, to) for a in artefacts if a.suite in suites}
    if "brainteaser" in suites and any(a.suite == "brainteaser" for a in artefacts):
        convert_brainteaser(to / "brainteaser")
    manifest = {a.dest: {"url": a.url, "sha256": a.sha256} for a in artefacts if (to / a.dest).is_file()}
    atomic_write_json(to / "pulled.json", manifest)
    return done


# ---------------------------------------------------------------- brainteaser
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


def load_object_npy(data: bytes) -> list:
    """A .npy object array as a list, unpickled with numpy's reconstruction functions only."""
    import io
    import pickle

    import numpy as np
    from numpy.lib import format as npformat

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if (module, name) not in _NUMPY_GLOBALS:
                raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a downloaded file")
            return getattr(__import__(module, fromlist=[name]), name)

    f = io.BytesIO(data)
    version = npformat.read_magic(f)
    read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
    shape, _, dtype = read_header(f)
    if dtype != np.dtype(object):
        return np.frombuffer(f.read(), dtype=dtype).reshape(shape).tolist()
    return [_plain(x) for x in Restricted(f).load()]


def _plain(x):
    """numpy scalars and arrays inside the records as JSON values."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if hasattr(x, "tolist"):
        return _plain(x.tolist())
    return x


def convert_brainteaser(folder: Path) -> None:
    """`raw/BTDATA.zip` + `raw/demonstration.npy` -> the `{SP,WP}_{train,test}.jsonl` and
    `demonstration.jsonl` the brainteaser suite reads."""
    import json

    import pyzipper

    from selm_bench.harness.store import atomic_write_text

    with pyzipper.AESZipFile(folder / "raw" / "BTDATA.zip") as z:
        z.setpassword(BT_PASSWORD)
        for member, out in BT_MEMBERS.items():
            rows = load_object_npy(z.read(member))
            atomic_write_text(folder / out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    demos = load_object_npy((folder / "raw" / "demonstration.npy").read_bytes())
    atomic_write_text(folder / "demonstration.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in demos))
