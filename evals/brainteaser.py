"""`brainteaser`: SemEval-2024 Task 9 (BRAINTEASER), sentence (SP) and word (WP) puzzles.

Data: `<data_dir>/brainteaser/{SP,WP}_<split>.jsonl` (option `split`, default "train"; option
`puzzles`, default both). Each puzzle comes as a group of three: the original ("SP-0"), its
semantic reconstruction ("SP-0_SR") and its context reconstruction ("SP-0_CR").

Scoring (option `mode`):
  - "loglikelihood" (default): each puzzle type becomes a generated lm-eval task
    (tasks/brainteaser_{sp,wp}.yaml + .jsonl, absolute paths) scored by the log-likelihood of
    each choice, run through `evals.lm_eval_suite.run_local_task`. Option `score` picks
    lm-eval's `acc` (raw log-likelihood, default) or `acc_norm` (per character). Option
    `num_fewshot` (default 0) draws that many of the 8 demonstrations of
    brainteaser/demonstration.jsonl (lm-eval's seeded sampler, same pool for SP and WP).
  - "generate": the model answers a lettered prompt through ctx.generator().chat (the first
    `num_fewshot` demonstrations as earlier turns); the option letter, else the option text,
    else a bare option number is parsed from the reply; unparsed counts as wrong.
Option `limit`: keep the first N puzzle groups per type (3N rows of the id-less test split).
lm-eval options `batch_size` and `apply_chat_template` pass through as in the lm-eval suite.
All options, with their types and defaults: BrainteaserOptions below.

Metrics (the task's): instance accuracy on `original`, `semantic`, `context` and over all
(`overall`); group accuracy `ori_sem` (original and semantic both right) and `ori_sem_con`
(all three right), over the groups that have those members. Unprefixed = both puzzle types
together; `sp/...`, `wp/...` per type.

`selm-bench data pull --suites brainteaser` fetches the authors' `data/BTDATA.zip` (1171-jpg/BrainTeaser,
pinned commit), an AES zip whose password the authors publish in their README (against crawlers), of
numpy object arrays, and `Prompting/demonstration.npy` (DATA_SOURCES); `convert_data` reads the arrays
with a restricted unpickler (`load_object_npy`: numpy's array reconstruction and nothing else) and writes
`{SP,WP}_{train,test}.jsonl` and `demonstration.jsonl`. The test answer keys in the zip are not extracted.

The official `test` split has neither labels nor ids: the suite then writes the submission
files only (answer_sen.txt for SP, answer_word.txt for WP: one predicted choice index 0-3 per
line in test order, -1 where nothing could be parsed; zip them for CodaLab) and no metrics.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from selm_bench.evals.base import EvalContext, SuiteError, SuiteResult, fmt, read_items, render
from selm_bench.evals.lm_eval_suite import estimate, run_local_task, write_task_yaml
from selm_bench.harness.core.registry import Artefact, register_suite
from selm_bench.harness.core.store import atomic_write_text
from selm_bench.harness.world import read_jsonl, write_jsonl

PUZZLES = {"SP": "answer_sen.txt", "WP": "answer_word.txt"}  # puzzle type -> submission file
SUFFIX_KIND = {"_SR": "semantic", "_CR": "context"}
KINDS = ("original", "semantic", "context")
SOURCE = "github.com/1171-jpg/BrainTeaser, data/BTDATA.zip (the zip password is in that repo's README)"
LETTERS = "ABCD"
SUITE = "brainteaser"
AUTHORS_REPO = "https://raw.githubusercontent.com/1171-jpg/BrainTeaser/4d164df75ba95682758248727bfc9d2746e598b7"
DATA_SOURCES = (  # what `selm-bench data pull` fetches: (dest under the data folder, url, SHA-256, size)
    Artefact(SUITE, f"{SUITE}/raw/BTDATA.zip", f"{AUTHORS_REPO}/data/BTDATA.zip",
             "3982996c23ab8c2b278e88792071c440a6c2f9af1ffc92b2d43a0152c425a6f5", 243885),
    Artefact(SUITE, f"{SUITE}/raw/demonstration.npy", f"{AUTHORS_REPO}/Prompting/demonstration.npy",
             "27b68f6ecf721036ad25c2af7378f81ba2e147e0b899ba6e04faa31e5dc4094c", 2329),
)
ZIP_PASSWORD = b"brainteaser"  # published in the authors' README
ZIP_MEMBERS = {"SP_train.npy": "SP_train.jsonl", "WP_train.npy": "WP_train.jsonl", "SP_test.npy": "SP_test.jsonl",
               "WP_test.npy": "WP_test.jsonl"}


# ---------------------------------------------------------------- data
def kind_of(item_id: str) -> str:
    return SUFFIX_KIND.get(item_id[-3:], "original")


def group_of(item_id: str) -> str:
    return item_id[:-3] if item_id[-3:] in SUFFIX_KIND else item_id


def load_rows(data_dir: Path | None, puzzle: str, split: str) -> list[dict[str, Any]]:
    path = Path(data_dir or "<data_dir unset>") / "brainteaser" / f"{puzzle}_{split}.jsonl"
    if data_dir is None or not path.exists():
        raise SuiteError(f"brainteaser: missing {path}; get it from {SOURCE} and convert the .npy arrays to JSONL")
    return read_jsonl(path)


def first_groups(rows: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """The rows of the first `n` puzzle groups (3n rows when there are no ids)."""
    if n is None:
        return rows
    if not all("id" in r for r in rows):
        return rows[: 3 * n]
    keep = set(list(dict.fromkeys(group_of(r["id"]) for r in rows))[:n])
    return [r for r in rows if group_of(r["id"]) in keep]


def load_demos(data_dir: Path | None, num_fewshot: int) -> list[dict[str, Any]]:
    """demonstration.jsonl ({Question, Answer, Choice1-3, label, choice_list}) in the rows' schema;
    none when zero-shot."""
    if num_fewshot <= 0:
        return []
    path = Path(data_dir or "<data_dir unset>") / "brainteaser" / "demonstration.jsonl"
    if data_dir is None or not path.exists():
        raise SuiteError(f"brainteaser: few-shot needs {path}; it is Prompting/demonstration.npy of "
                         "github.com/1171-jpg/BrainTeaser")
    demos = [{"id": f"demo-{i}", "question": d["Question"], "choice_list": d["choice_list"], "label": d["label"]}
             for i, d in enumerate(read_jsonl(path))]
    if num_fewshot > len(demos):
        raise SuiteError(f"brainteaser: num_fewshot={num_fewshot} but {path} has {len(demos)} demonstrations")
    return demos


# ---------------------------------------------------------------- metrics
def _mean(xs: list[bool]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def group_metrics(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Instance and group accuracies of records {id, correct}."""
    by_kind: dict[str, list[bool]] = defaultdict(list)
    groups: dict[str, dict[str, bool]] = defaultdict(dict)
    for r in records:
        kind = kind_of(r["id"])
        by_kind[kind].append(bool(r["correct"]))
        groups[group_of(r["id"])][kind] = bool(r["correct"])
    out = {k: _mean(by_kind[k]) for k in KINDS}
    out["ori_sem"] = _mean([g["original"] and g["semantic"] for g in groups.values()
                            if "original" in g and "semantic" in g])
    out["ori_sem_con"] = _mean([all(g[k] for k in KINDS) for g in groups.values() if all(k in g for k in KINDS)])
    out["overall"] = _mean([bool(r["correct"]) for r in records])
    return out


# ---------------------------------------------------------------- log-likelihood through lm-eval
def write_task(task_dir: Path, puzzle: str, rows: list[dict[str, Any]], demos: list[dict[str, Any]],
               labelled: bool) -> str:
    """A local lm-eval task for one puzzle type: data + YAML with absolute paths; its name."""
    name = f"brainteaser_{puzzle.lower()}"
    task_dir = Path(task_dir).resolve()
    data = task_dir / f"{name}.jsonl"
    write_jsonl(data, rows)
    config: dict[str, Any] = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_choice": "choice_list",
        # lm-eval computes acc even predict-only, so unlabelled rows need some index; 0 is never reported.
        "doc_to_target": "label" if labelled else "{{label if label is not none else 0}}",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0},
    }
    if demos:
        # Inline, not a second data split: one json dataset shares one schema, and the
        # unlabelled test rows (label null) would not cast against the labelled demos.
        config["fewshot_config"] = {"sampler": "default", "samples": demos}
    write_task_yaml(task_dir, config)
    return name


def _choice_from_lls(lls: list[float], choices: list[str], score: str) -> int:
    # lm-eval's own rule: acc = argmax loglikelihood, acc_norm = argmax loglikelihood per character.
    vals = [ll / len(c) for ll, c in zip(lls, choices)] if score == "acc_norm" else lls
    return max(range(len(vals)), key=vals.__getitem__)


def score_loglikelihood(ctx: EvalContext, rows: dict[str, list[dict[str, Any]]], labelled: bool,
                        num_fewshot: int, score: str) -> list[dict[str, Any]]:
    demos = load_demos(ctx.data_dir, num_fewshot)
    task_dir = ctx.out_dir / "tasks"
    names = {write_task(task_dir, p, rs, demos, labelled): p for p, rs in rows.items()}
    results = run_local_task(ctx, task_dir, list(names), num_fewshot, predict_only=not labelled)
    records = []
    for name, puzzle in names.items():
        for s in sorted(results["samples"][name], key=lambda s: s["doc_id"]):
            doc = s["doc"]
            pred = _choice_from_lls([r[0] for r in s["filtered_resps"]], doc["choice_list"], score)
            rec = {"id": doc["id"], "puzzle": puzzle, "pred": pred, "label": doc.get("label")}
            if labelled:
                rec["correct"] = bool(s[score])  # lm-eval's value; equals pred == label
            rec["score"] = float(rec["correct"]) if labelled else None
            records.append(rec)
    return records


# ---------------------------------------------------------------- generation
def render_question(row: dict[str, Any]) -> str:
    options = "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(row["choice_list"]))
    return f"{row['question']}\n{options}\nAnswer with the letter of the correct option."


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", re.sub(r"\s+", " ", text.lower())).strip()


# A bare leading letter needs punctuation after it: "A lazy farmer..." starts with an article.
_LETTER = re.compile(r"\(([A-D])\)|(?i:answer|option|choice)\s*(?:is|:)?\s*\(?([A-D])\b|^\s*([A-D])(?:[.):]|\s*$)")
_NUMBER = re.compile(r"^\s*\(?([1-4])(?:[.):]|\s|$)")


def parse_choice(reply: str, choices: list[str]) -> int | None:
    """The option chosen in a free-text reply: letter, else option text, else leading number 1-4."""
    m = _LETTER.search(reply)
    if m:
        return LETTERS.index(next(g for g in m.groups() if g))
    said = _norm(reply)
    hits = [i for i, c in enumerate(choices) if _norm(c) and _norm(c) in said]
    if hits:
        return max(hits, key=lambda i: len(_norm(choices[i])))  # the most specific option mentioned
    m = _NUMBER.match(reply)
    return int(m.group(1)) - 1 if m else None


def score_generate(ctx: EvalContext, rows: dict[str, list[dict[str, Any]]], labelled: bool,
                   num_fewshot: int) -> list[dict[str, Any]]:
    from selm_bench.trainers.generation import Sampling

    shots: list[dict[str, str]] = []
    for d in load_demos(ctx.data_dir, num_fewshot)[:num_fewshot]:
        answer = f"({LETTERS[d['label']]}) {d['choice_list'][d['label']]}"
        shots += [{"role": "user", "content": render_question(d)}, {"role": "assistant", "content": answer}]
    flat = [(p, r) for p, rs in rows.items() for r in rs]
    convs = [shots + [{"role": "user", "content": render_question(r)}] for _, r in flat]
    sampling = Sampling(max_new_tokens=int(ctx.option("max_new_tokens")), seed=ctx.seed)
    replies = ctx.generator().chat(convs, sampling, desc="brainteaser")
    records = []
    for (puzzle, r), reply in zip(flat, replies):
        pred = parse_choice(reply[0], r["choice_list"])
        rec = {"id": r["id"], "puzzle": puzzle, "pred": pred, "label": r.get("label"), "response": reply[0]}
        if labelled:
            rec["correct"] = pred == r["label"]
        rec["score"] = float(rec["correct"]) if labelled else None
        records.append(rec)
    return records


# ---------------------------------------------------------------- suite
class BrainteaserOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    split: str = Field("train", pattern=r"^[A-Za-z0-9_-]+$",
                       description="data file <data_dir>/brainteaser/{SP,WP}_<split>.jsonl (test = unlabelled, "
                                   "writes the submission files)")
    puzzles: list[Literal["SP", "WP"]] = Field(["SP", "WP"], min_length=1,
                                               description="puzzle types: a list or a comma string (SP, WP; any case)")
    mode: Literal["loglikelihood", "generate"] = Field("loglikelihood", description="how a choice is scored")
    score: Literal["acc", "acc_norm"] = Field("acc", description="loglikelihood mode: raw (acc) or per-character "
                                                                 "(acc_norm) log-likelihood")
    num_fewshot: int = Field(0, ge=0, description="demonstrations from brainteaser/demonstration.jsonl (8 there)")
    limit: int | None = Field(None, ge=1, description="first N puzzle groups per type (None = all)")
    max_new_tokens: int = Field(32, gt=0, description="generate mode: tokens per reply")
    batch_size: int | None = Field(None, ge=1, description="loglikelihood mode: lm-eval batch size; "
                                                            "None = the eval's batch size, else 16")
    apply_chat_template: bool = Field(False, description="loglikelihood mode: lm-eval's apply_chat_template")

    @field_validator("puzzles", mode="before")
    @classmethod
    def _puzzle_list(cls, value: Any) -> Any:
        """"SP,wp" or ["sp"] -> ["SP", "WP"] / ["SP"], as the suite has always accepted."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, (list, tuple)):
            return [v.strip().upper() if isinstance(v, str) else v for v in value if not isinstance(v, str) or v.strip()]
        return value


def paired(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """Instance accuracies (overall and per kind) of scored records; the group metrics need whole
    groups, which a bootstrap over items breaks, so they are not resampled."""
    scored = [i for i in items if i.get("score") is not None]
    out = {"overall": _mean([i["score"] for i in scored])}
    out.update({k: _mean([i["score"] for i in scored if kind_of(i["id"]) == k]) for k in KINDS})
    return out


def preflight(ctx: EvalContext) -> None:
    """Before a run's first stage: every chosen puzzle set's file for the split is there and reads."""
    ctx.for_suite(SUITE)
    for p in ctx.option("puzzles"):
        load_rows(ctx.data_dir, p, ctx.option("split"))


# ---------------------------------------------------------------- `selm-bench data pull`
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


def convert_data(folder: Path) -> None:
    """`raw/BTDATA.zip` + `raw/demonstration.npy` -> the `{SP,WP}_{train,test}.jsonl` and
    `demonstration.jsonl` the suite reads."""
    import json

    import pyzipper

    with pyzipper.AESZipFile(folder / "raw" / "BTDATA.zip") as z:
        z.setpassword(ZIP_PASSWORD)
        for member, out in ZIP_MEMBERS.items():
            rows = load_object_npy(z.read(member))
            atomic_write_text(folder / out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    demos = load_object_npy((folder / "raw" / "demonstration.npy").read_bytes())
    atomic_write_text(folder / "demonstration.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in demos))


def prepare_data(root: Path) -> None:
    """After `data pull` fetched DATA_SOURCES into the data folder `root`: unpack them."""
    convert_data(root / SUITE)


# ---------------------------------------------------------------- the report's drill-down
def drilldown(items: list[dict[str, Any]], folder: Path, k: int = 10) -> str:
    """Per puzzle type: groups (original, semantic and context reconstructions) all right / the
    first `k` groups with a miss, with the original question from the suite's task data."""
    if not any("correct" in i for i in items):
        return render("brainteaser.html", labelled=False)
    questions = {}
    for f in sorted((folder / "tasks").glob("*.jsonl")) if (folder / "tasks").is_dir() else []:
        for rec in read_items(f)[0]:
            questions[rec.get("id")] = rec
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for i in items:
        groups[(str(i.get("puzzle", "?")), group_of(str(i.get("id", "?"))))][kind_of(str(i.get("id", "?")))] = i
    summary, missed = [], []
    for puzzle in sorted({p for p, _ in groups}):
        gs = {g: m for (p, g), m in groups.items() if p == puzzle}
        full = [m for m in gs.values() if all(kd in m for kd in KINDS)]
        summary.append([puzzle, len(gs), sum(all(m[kd].get("correct") for kd in KINDS) for m in full), len(full)])
        for g, m in gs.items():
            if not all(x.get("correct") for x in m.values()) and len(missed) < k:
                q = questions.get(g, {})
                choices = q.get("choice_list") or []
                orig = m.get("original", {})
                pick = lambda n: str(choices[n]) if isinstance(n, int) and 0 <= n < len(choices) else fmt(n)
                marks = " ".join(f"{kd}: {'✓' if m[kd].get('correct') else '✗'}" for kd in KINDS if kd in m)
                missed.append({"puzzle": puzzle, "group": g, "members": marks, "question": q.get("question", ""),
                               "predicted": pick(orig.get("pred")), "gold": pick(orig.get("label"))})
    return render("brainteaser.html", labelled=True, summary=summary, missed=missed, k=k)


def run(ctx: EvalContext) -> SuiteResult:
    ctx.for_suite(SUITE)
    split = ctx.option("split")
    puzzles = ctx.option("puzzles")
    mode = ctx.option("mode")
    score = ctx.option("score")
    num_fewshot = ctx.option("num_fewshot")
    limit = ctx.option("limit")

    rows = {p: first_groups(load_rows(ctx.data_dir, p, split), limit) for p in puzzles}
    labelled = all("label" in r and "id" in r for rs in rows.values() for r in rs)
    if not labelled:  # the official test split: ids are ours, only for items.jsonl
        rows = {p: [{"id": f"{p}-test-{i}", **r} for i, r in enumerate(rs)] for p, rs in rows.items()}
    rows = {p: [{"id": r["id"], "question": r["question"], "choice_list": r["choice_list"], "label": r.get("label")}
                for r in rs] for p, rs in rows.items()}

    if mode == "generate":
        records = score_generate(ctx, rows, labelled, num_fewshot)
    else:
        records = score_loglikelihood(ctx, rows, labelled, num_fewshot, score)
    info: dict[str, Any] = {"split": split, "puzzles": puzzles, "mode": mode, "num_fewshot": num_fewshot,
                            "n": {p: len(rs) for p, rs in rows.items()}, "unparsed": sum(r["pred"] is None for r in records)}
    if mode == "loglikelihood":
        info["score"] = score

    if not labelled:
        for p in puzzles:
            preds = [r["pred"] for r in records if r["puzzle"] == p]
            atomic_write_text(ctx.out_dir / PUZZLES[p], "".join(f"{-1 if x is None else x}\n" for x in preds))
        info["no_accuracy"] = (f"the {split!r} split has no labels: predictions written to "
                               f"{', '.join(PUZZLES[p] for p in puzzles)} (SemEval-2024 Task 9 submission format)")
        return SuiteResult(metrics={}, items=records, info=info)

    for r in records:
        r["kind"] = kind_of(r["id"])
    metrics: dict[str, Any] = dict(group_metrics(records))
    for p in puzzles:
        for k, v in group_metrics([r for r in records if r["puzzle"] == p]).items():
            metrics[f"{p.lower()}/{k}"] = v
    return SuiteResult(metrics=metrics, items=records, info=info)


# ---------------------------------------------------------------- registration
# Everything the harness knows about this suite (harness/core/registry.py `Suite`).
register_suite(SUITE, help="SemEval-2024 Task 9 BRAINTEASER: lateral-thinking multiple choice (SP, WP)",
               options=BrainteaserOptions, headline="overall", paired=paired, preflight=preflight, plan=estimate,
               data_files=(f"{SUITE}/SP_train.jsonl", f"{SUITE}/WP_train.jsonl"), data_sources=DATA_SOURCES,
               prepare_data=prepare_data, drilldown=drilldown, order=40)(run)
