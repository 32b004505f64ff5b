"""Per-suite drill-down sections of the HTML report, read from `evals/<checkpoint>/<suite>/items.jsonl`:
tiny-world failures per category, MT-Bench per category with the lowest-rated answers and the
judge's explanation, AlpacaEval losses, BrainTeaser groups, lm-eval per task."""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any, Callable

from selm_bench.evals.brainteaser import KINDS, group_of, kind_of
from selm_bench.harness.plots import number

Item = dict[str, Any]
MAX_TEXT = 1500  # characters of a shown answer or judgment
SUITE_ORDER = ["tiny-world", "mt-bench", "alpaca-eval", "brainteaser", "lm-eval"]


def read_items(path: Path) -> tuple[list[Item], str | None]:
    """The records of an items.jsonl and a note about what could not be read (None if all was)."""
    if not path.is_file():
        return [], "no items.jsonl"
    items, bad = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad.append(n)
            continue
        if isinstance(rec, dict):
            items.append(rec)
    note = f"{path.name}: line(s) {', '.join(map(str, bad[:5]))} not valid JSON, skipped" if bad else None
    return items, note


def text(v: Any, limit: int = MAX_TEXT) -> str:
    """Escaped text in a pre-wrapped block, cut at `limit` characters (the cut is marked)."""
    s = "" if v is None else (v if isinstance(v, str) else json.dumps(v))
    cut = len(s) > limit
    return f'<div class="txt">{escape(s[:limit])}{" […cut]" if cut else ""}</div>'


def fmt(v: Any) -> str:
    x = number(v)
    return escape(str(v if v is not None else "")) if x is None else f"{x:.4g}"


def table(header: list[str], rows: list[list[str]], cls: str = "items") -> str:
    """A table of already-escaped cells."""
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


# ---------------------------------------------------------------- suites
def tiny_world(items: list[Item], folder: Path, k: int = 3) -> str:
    """Accuracy per category and each category's `k` lowest-scored responses."""
    by_cat: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_cat[str(it.get("category", "?"))].append(it)
    summary, examples = [], []
    for cat, its in sorted(by_cat.items()):
        wrong = [i for i in its if not i.get("correct", number(i.get("score")) == 1.0)]
        summary.append([escape(cat), str(len(its)), fmt(1 - len(wrong) / len(its)),
                        fmt(_mean([number(i.get("score")) or 0.0 for i in its])), str(len(wrong))])
        for i in sorted(wrong, key=lambda i: number(i.get("score")) or 0.0)[:k]:
            examples.append([escape(cat), text(i.get("prompt")), text(i.get("answer")), text(i.get("response")),
                             fmt(i.get("score"))])
    return (table(["category", "n", "accuracy", "mean score", "failures"], summary)
            + (f"<p>Lowest-scored failures (up to {k} per category):</p>" if examples else "")
            + table(["category", "prompt", "gold answer", "response", "score"], examples))


def mt_bench(items: list[Item], folder: Path, k: int = 2) -> str:
    """Mean rating per category and each category's `k` lowest-rated answers with the judgment;
    a rating of -1 (FastChat's failed judgment) or none is left out of the means."""
    qid = lambda i: i.get("question_id", i.get("id"))  # newer items: id "<question_id>/turn-<n>"
    turn1 = {qid(i): i.get("question") for i in items if i.get("turn") == 1}
    by_cat: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_cat[str(it.get("category", "?"))].append(it)
    summary, lowest = [], []
    for cat, its in sorted(by_cat.items()):
        rated = [i for i in its if number(i.get("score")) is not None and number(i.get("score")) >= 0]
        summary.append([escape(cat), str(len(rated)), fmt(_mean([number(i["score"]) for i in rated])),
                        str(len(its) - len(rated))])
        for i in sorted(rated, key=lambda i: number(i["score"]))[:k]:
            q = text(i.get("question"))
            if i.get("turn", 1) != 1 and turn1.get(qid(i)):
                q = f'<div class="muted">turn 1: {escape(str(turn1[qid(i)]))}</div>' + q
            lowest.append([escape(cat), f"{escape(str(qid(i)))} / {escape(str(i.get('turn', '')))}", q,
                           text(i.get("answer")), fmt(i.get("score")), text(i.get("judgment"))])
    return (table(["category", "ratings", "mean rating", "failed or missing judgments"], summary)
            + (f"<p>Lowest-rated answers (up to {k} per category) and the judge's explanation:</p>" if lowest else "")
            + table(["category", "question / turn", "question", "answer", "rating", "judgment"], lowest))


def alpaca_eval(items: list[Item], folder: Path, k: int = 10) -> str:
    """Wins, losses and ties (preference 1 = reference preferred, 2 = model preferred, 1.5 = tie)
    and the `k` clearest losses."""
    prefs = [(number(i.get("preference")), i) for i in items]
    losses = sorted([(p, i) for p, i in prefs if p is not None and p < 1.5], key=lambda t: t[0])
    wins = sum(p is not None and p > 1.5 for p, _ in prefs)
    ties = sum(p == 1.5 for p, _ in prefs)
    unjudged = sum(p is None for p, _ in prefs)
    out = (f"<p>{wins} wins, {len(losses)} losses, {ties} ties, {unjudged} not annotated "
           f"(of {len(items)}; preference 1 = reference preferred, 2 = model preferred).</p>")
    errors = [str(i["judge_error"]) for i in items if i.get("judge_error")]
    if errors:
        out += f"<p>{len(errors)} failed judgments; the first one's reason:</p>" + text(errors[0], 500)
    cats = defaultdict(int)
    for _, i in losses:
        if "category" in i:
            cats[str(i["category"])] += 1
    if cats:
        out += table(["category", "losses"], [[escape(c), str(n)] for c, n in sorted(cats.items())])
    rows = [[text(i.get("instruction")), text(i.get("output")), text(i.get("reference_output")), fmt(p)]
            for p, i in losses[:k]]
    if rows:
        out += f"<p>The {len(rows)} clearest losses:</p>"
    return out + table(["instruction", "model output", "reference output", "preference"], rows)


def brainteaser(items: list[Item], folder: Path, k: int = 10) -> str:
    """Per puzzle type: groups (original, semantic and context reconstructions) all right / the
    first `k` groups with a miss, with the original question from the suite's task data."""
    if not any("correct" in i for i in items):
        return "<p>No labels (test split): predictions only, no accuracy.</p>"
    questions = {}
    for f in sorted((folder / "tasks").glob("*.jsonl")) if (folder / "tasks").is_dir() else []:
        for rec in read_items(f)[0]:
            questions[rec.get("id")] = rec
    groups: dict[tuple[str, str], dict[str, Item]] = defaultdict(dict)
    for i in items:
        groups[(str(i.get("puzzle", "?")), group_of(str(i.get("id", "?"))))][kind_of(str(i.get("id", "?")))] = i
    summary, missed = [], []
    for puzzle in sorted({p for p, _ in groups}):
        gs = {g: m for (p, g), m in groups.items() if p == puzzle}
        full = [m for m in gs.values() if all(kd in m for kd in KINDS)]
        summary.append([escape(puzzle), str(len(gs)), str(sum(all(m[kd].get("correct") for kd in KINDS) for m in full)),
                        str(len(full))])
        for g, m in gs.items():
            if not all(x.get("correct") for x in m.values()) and len(missed) < k:
                q = questions.get(g, {})
                choices = q.get("choice_list") or []
                orig = m.get("original", {})
                pick = lambda n: escape(str(choices[n])) if isinstance(n, int) and 0 <= n < len(choices) else fmt(n)
                marks = " ".join(f"{kd}: {'✓' if m[kd].get('correct') else '✗'}" for kd in KINDS if kd in m)
                missed.append([escape(puzzle), escape(g), escape(marks), text(q.get("question", "")),
                               pick(orig.get("pred")), pick(orig.get("label"))])
    return (table(["puzzle", "groups", "all three right", "complete groups"], summary)
            + (f"<p>Groups with a miss (first {k}; predicted and gold answers of the original):</p>" if missed else "")
            + table(["puzzle", "group", "members", "original question", "predicted", "gold"], missed))


def lm_eval(items: list[Item], folder: Path) -> str:
    """Per task: samples and their mean per-sample score."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for i in items:
        by_task[str(i.get("task", "?"))].append(number(i.get("score", i.get("acc"))) or 0.0)
    return table(["task", "samples", "mean per-sample score"],
                 [[escape(t), str(len(v)), fmt(_mean(v))] for t, v in sorted(by_task.items())])


def generic(items: list[Item], folder: Path) -> str:
    scores = [number(i.get("score")) for i in items if number(i.get("score")) is not None]
    return f"<p>{len(items)} items" + (f", mean score {fmt(_mean(scores))}" if scores else "") + ".</p>"


SECTIONS: dict[str, Callable[[list[Item], Path], str]] = {
    "tiny-world": tiny_world, "mt-bench": mt_bench, "alpaca-eval": alpaca_eval,
    "brainteaser": brainteaser, "lm-eval": lm_eval}


def suite_section(suite: str, results: list[tuple[str, Path]], open_last: bool = True) -> str:
    """One suite's drill-down: a collapsible block per checkpoint (the last one open)."""
    base = suite.split(":", 1)[0]
    render = SECTIONS.get(base, generic)
    blocks = []
    for n, (checkpoint, folder) in enumerate(results):
        items, note = read_items(folder / "items.jsonl")
        body = render(items, folder) if items else "<p>No per-item records.</p>"
        if note and items:
            body = f'<p class="muted">{escape(note)}</p>' + body
        is_open = " open" if open_last and n == len(results) - 1 else ""
        blocks.append(f"<details{is_open}><summary>{escape(checkpoint)} · {len(items)} items</summary>{body}</details>")
    return f'<h3 id="suite-{escape(base)}">{escape(suite)}</h3>' + "".join(blocks)


def suite_order(suite: str) -> tuple:
    base = suite.split(":", 1)[0]
    return (SUITE_ORDER.index(base) if base in SUITE_ORDER else len(SUITE_ORDER), suite)
