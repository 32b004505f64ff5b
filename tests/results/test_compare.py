"""`selm-bench compare`: paired bootstrap on synthetic runs with a known, planted effect."""

import json
import random

import pytest
from pathlib import Path

from typer.testing import CliRunner

from selm_bench.harness.cli import app


def write_run(root: Path, correct: dict[str, bool], checkpoint: str = "selm/iter-2", extra_checkpoints=()) -> Path:
    """A minimal finished run: manifest + one tiny-world result per checkpoint (items with id/score)."""
    results = []
    for ckpt in [*extra_checkpoints, checkpoint]:
        folder = root / "evals" / ckpt / "tiny-world"
        folder.mkdir(parents=True)
        items = [{"id": i, "category": "add", "score": float(c), "correct": c} for i, c in correct.items()]
        acc = sum(correct.values()) / len(correct)
        (folder / "metrics.json").write_text(json.dumps(
            {"suite": "tiny-world", "checkpoint": ckpt, "metrics": {"accuracy": acc, "score": acc}, "info": {}}))
        (folder / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
        results.append(f"evals/{ckpt}/tiny-world")
    (root / "manifest.json").write_text(json.dumps({"results": results, "stages": {}}))
    return root


def base_items(n: int = 400, p: float = 0.6, seed: int = 0) -> dict[str, bool]:
    rng = random.Random(seed)
    return {f"eval-{i}": rng.random() < p for i in range(n)}


def compare(*args: str):
    return CliRunner().invoke(app, ["compare", *args])


def test_identical_runs_pass_with_zero_interval(tmp_path):
    items = base_items()
    a, b = write_run(tmp_path / "a", items), write_run(tmp_path / "b", items)
    res = compare(str(a), str(b), "--format", "json", "--resamples", "200")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    acc = next(m for s in out["suites"] for m in s["metrics"] if m["metric"] == "accuracy")
    assert acc["base"] == acc["new"] == sum(items.values()) / 400  # hand-computed from the data
    assert (acc["low"], acc["high"], acc["verdict"]) == (0.0, 0.0, "no significant change") and acc["gated"]
    assert out["failed"] is False


def test_planted_regression_is_flagged_and_exit_1(tmp_path):
    items = base_items()
    worse = dict(items)
    flipped = [i for i, c in items.items() if c][:60]  # 60 of 400 right answers turned wrong: -0.15
    for i in flipped:
        worse[i] = False
    a, b = write_run(tmp_path / "a", items), write_run(tmp_path / "b", worse)
    res = compare(str(a), str(b), "--format", "json", "--resamples", "500")
    assert res.exit_code == 1, res.output
    acc = next(m for s in json.loads(res.output)["suites"] for m in s["metrics"] if m["metric"] == "accuracy")
    assert abs(acc["delta"] - (-60 / 400)) < 1e-12
    assert acc["high"] < 0 and acc["verdict"] == "regressed" and acc["failed"]
    # the same change read the other way is an improvement, and passes
    res = compare(str(b), str(a), "--format", "json", "--resamples", "500")
    assert res.exit_code == 0
    acc = next(m for s in json.loads(res.output)["suites"] for m in s["metrics"] if m["metric"] == "accuracy")
    assert acc["verdict"] == "improved" and acc["low"] > 0
    # a threshold larger than the drop lets it pass; the text format says so
    res = compare(str(a), str(b), "--threshold", "tiny-world/accuracy=0.5", "--resamples", "200")
    assert res.exit_code == 0 and "regressed" in res.output and "REGRESSION" not in res.output


def test_gating_only_named_metrics(tmp_path):
    items = base_items()
    worse = {i: False if n < 80 else c for n, (i, c) in enumerate(items.items())}
    a, b = write_run(tmp_path / "a", items), write_run(tmp_path / "b", worse)
    assert compare(str(a), str(b), "--resamples", "200").exit_code == 1  # the headline (accuracy) is gated
    # gating only score, with a threshold above its drop: accuracy still regressed, but is not gated
    res = compare(str(a), str(b), "--metric", "tiny-world/score", "--threshold", "tiny-world/score=0.9", "--resamples", "200")
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and "regressed" in res.output


def test_deterministic_for_a_seed(tmp_path):
    rng = random.Random(5)
    items = base_items()
    noisy = {i: (not c) if rng.random() < 0.1 else c for i, c in items.items()}
    a, b = write_run(tmp_path / "a", items), write_run(tmp_path / "b", noisy)
    results = [compare(str(a), str(b), "--format", "json", "--seed", str(s), "--resamples", "300") for s in (7, 7, 8)]
    runs = [r.output for r in results]
    acc = next(m for m in json.loads(runs[0])["suites"][0]["metrics"] if m["metric"] == "accuracy")
    assert acc["low"] < 0 < acc["high"]  # symmetric noise: the interval spans 0 ...
    assert acc["verdict"] == "no significant change" and results[0].exit_code == 0  # ... and the gate passes
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # another seed, other resamples


def test_unshared_items_are_counted_and_excluded(tmp_path):
    items = base_items(100)
    fewer = {i: c for n, (i, c) in enumerate(items.items()) if n >= 10}
    a, b = write_run(tmp_path / "a", items), write_run(tmp_path / "b", fewer)
    res = compare(str(a), str(b), "--format", "json", "--resamples", "100")
    suite = json.loads(res.output)["suites"][0]
    assert (suite["shared"], suite["only_base"], suite["only_new"]) == (90, 10, 0)
    acc = suite["metrics"][0]
    assert acc["base"] == acc["new"] == sum(fewer.values()) / 90  # both on the shared items


def test_checkpoint_choice_and_default_last(tmp_path):
    items = base_items(50)
    a = write_run(tmp_path / "a", items, checkpoint="selm/iter-2", extra_checkpoints=("sft",))
    res = compare(f"{a}:sft", str(a), "--resamples", "100")
    assert res.exit_code == 0 and f"{a}:sft" in res.output and f"{a}:selm/iter-2" in res.output


def test_seed_groups_average_per_item_scores(tmp_path):
    ids = [f"eval-{i}" for i in range(4)]
    s0 = write_run(tmp_path / "cells" / "s0", dict(zip(ids, [True, True, False, False])))
    s1 = write_run(tmp_path / "cells" / "s1", dict(zip(ids, [True, False, False, False])))
    group = tmp_path / "groups" / "g"
    group.mkdir(parents=True)
    (group / "seeds.json").write_text(json.dumps({"runs": ["../../cells/s0", "../../cells/s1"]}))
    other = write_run(tmp_path / "other", dict(zip(ids, [True, True, True, True])))
    res = compare(str(group), str(other), "--format", "json", "--resamples", "100")
    acc = next(m for m in json.loads(res.output)["suites"][0]["metrics"] if m["metric"] == "accuracy")
    assert acc["base"] == (1 + 0.5 + 0 + 0) / 4 and acc["new"] == 1.0  # per-item means over the two seeds


def test_bad_input_is_one_line_exit_2(tmp_path):
    a = write_run(tmp_path / "a", base_items(20))
    cases = [
        ([str(tmp_path / "nope"), str(a)], "run folder not found"),
        ([f"{a}:dpo", str(a)], "no checkpoint 'dpo'"),
        ([str(a), str(a), "--metric", "tiny-world/nope"],
         "error: unknown metric 'tiny-world/nope'; metrics both sides have: tiny-world/accuracy, tiny-world/score"),
        ([str(a), str(a), "--threshold", "tiny-world/accuracy"], "--threshold"),
        ([str(a), str(a), "--threshold", "tiny-world/accuracy=x"], "--threshold"),
        ([str(a), str(a), "--format", "xml"], "--format"),
        ([str(tmp_path), str(a)], "not a run folder"),
    ]
    for args, msg in cases:
        res = compare(*args)
        assert res.exit_code == 2, (args, res.output)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], (args, res.output)


def test_gated_metric_is_the_headline_else_the_first():
    from selm_bench.harness.reports.compare import headline_metric

    assert headline_metric("mt-bench", ["turn-1", "score", "turn-2"]) == "score"
    assert headline_metric("mt-bench", ["turn-1", "turn-2"]) == "turn-1"


def test_text_report_exactly():
    from pathlib import Path

    from selm_bench.harness.reports.compare import MetricResult, Side, SuiteComparison, to_text

    base = Side("a:dpo", [Path("a")], "dpo")
    new = Side("g:selm", [Path("g/s0"), Path("g/s1")], "selm")
    ok = SuiteComparison("tiny-world", 400, 0, 0, [
        MetricResult("tiny-world", "accuracy", 0.5, 0.61234, 0.11234, 0.05, 0.17, "improved", True, 0.01, False),
        MetricResult("tiny-world", "score", None, 0.7, None, None, None, "no significant change", False, 0.0, False)])
    bad = SuiteComparison("mt-bench", 10, 2, 1, [
        MetricResult("mt-bench", "score", 7.0, 6.0, -1.0, -1.5, -0.5, "regressed", True, 0.25, True)])
    assert to_text(base, new, [ok]) == (
        "base: a:dpo\n"
        "new:  g:selm (mean of 2 seeds)\n"
        "\n"
        "tiny-world: 400 items paired\n"
        "  accuracy                           0.5 -> 0.6123    delta    0.1123 95% CI [0.05, 0.17]  improved"
        " [gate, threshold 0.01]\n"
        "  score                                - -> 0.7       delta         - 95% CI [-, -]  no significant change\n"
        "\n"
        "result: ok (no gated metric regressed beyond its threshold)\n")
    assert to_text(new, base, [bad]).splitlines()[:4] == [
        "base: g:selm (mean of 2 seeds)", "new:  a:dpo", "",
        "mt-bench: 10 items paired; excluded: 2 only in base, 1 only in new"]
    assert to_text(new, base, [bad]).splitlines()[4:] == [
        "  score                                7 -> 6         delta        -1 95% CI [-1.5, -0.5]  regressed"
        " [gate, threshold 0.25]  REGRESSION", "",
        "result: REGRESSION (a gated metric regressed beyond its threshold)"]


def test_seed_items_are_averaged(tmp_path):
    from selm_bench.harness.reports.compare import CompareError, _average, side_runs

    assert _average([{"id": "a", "score": 1.0, "correct": True, "text": "x"},
                     {"id": "a", "score": 0.0, "correct": False, "text": "y"}]) == {
        "id": "a", "score": 0.5, "correct": 0.5, "text": "x"}
    assert _average([{"id": "a", "score": 1.0}, {"id": "a", "score": None}])["score"] is None
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "seeds.json").write_text(json.dumps({"runs": ["../s0", "../s1"]}))
    write_run(tmp_path / "s0", base_items(4))
    with pytest.raises(CompareError) as err:
        side_runs(tmp_path / "g")
    assert str(err.value) == f"{tmp_path / 'g'}: seed runs not finished: {tmp_path / 'g' / '../s1'}"
    write_run(tmp_path / "s1", base_items(4))
    assert side_runs(tmp_path / "g") == [tmp_path / "g" / "../s0", tmp_path / "g" / "../s1"]
    with pytest.raises(CompareError) as err:
        side_runs(tmp_path)
    assert str(err.value) == f"{tmp_path}: not a run folder (no manifest.json) nor a seed group (seeds.json)"


def _openllm_results(tasks):
    """lm-eval-shaped results of the openllm preset, numbers by hand and consistent with the samples:
    arc_challenge acc 2/4 but acc_norm 3/4; hellaswag acc 1/4, acc_norm 2/4; truthfulqa_mc2 acc
    (0.25 + 0.75)/2; mmlu a group of two subtasks of 2 and 6 samples, 1 and 5 right: 6/8 = 0.75 (the
    mean over samples, lm-eval's weight_by_size), not (1/2 + 5/6)/2; winogrande 2/2; gsm8k with two
    filters, strict-match 1/4, flexible-extract 3/4."""
    def mc(doc_id, acc, acc_norm=None):
        row = {"doc_id": doc_id, "doc": {}, "filter": "none", "target": 0, "filtered_resps": [(-1.0, True), (-2.0, False)],
               "metrics": ["acc"] + (["acc_norm"] if acc_norm is not None else []), "acc": acc}
        return row | ({"acc_norm": acc_norm} if acc_norm is not None else {})

    def gen(doc_id, flt, em):
        return {"doc_id": doc_id, "doc": {}, "filter": flt, "target": "4", "filtered_resps": ["4" if em else "x"],
                "metrics": ["exact_match"], "exact_match": em}

    samples = {
        "arc_challenge": [mc(0, 1.0, 1.0), mc(1, 0.0, 1.0), mc(2, 0.0, 0.0), mc(3, 1.0, 1.0)],
        "hellaswag": [mc(0, 0.0, 1.0), mc(1, 0.0, 0.0), mc(2, 0.0, 0.0), mc(3, 1.0, 1.0)],
        "truthfulqa_mc2": [mc(0, 0.25), mc(1, 0.75)],
        "mmlu_a": [mc(0, 1.0), mc(1, 0.0)],
        "mmlu_b": [mc(i, float(i < 5)) for i in range(6)],
        "winogrande": [mc(0, 1.0), mc(1, 1.0)],
        "gsm8k": [gen(d, "strict-match", float(d == 2)) for d in range(4)]
                 + [gen(d, "flexible-extract", float(d != 1)) for d in range(4)]}
    results = {"arc_challenge": {"acc,none": 0.5, "acc_norm,none": 0.75}, "hellaswag": {"acc,none": 0.25, "acc_norm,none": 0.5},
               "truthfulqa_mc2": {"acc,none": 0.5}, "mmlu": {"acc,none": 0.75}, "mmlu_a": {"acc,none": 0.5},
               "mmlu_b": {"acc,none": 5 / 6}, "winogrande": {"acc,none": 1.0},
               "gsm8k": {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.75}}
    leaves = {"mmlu": ["mmlu_a", "mmlu_b"]}
    names = [t for t in tasks for t in [t, *leaves.get(t, [])]]
    return {"results": {t: results[t] for t in names}, "group_subtasks": {t: leaves.get(t, []) for t in tasks},
            "configs": {t: {"output_type": "generate_until" if t == "gsm8k" else "multiple_choice"} for t in names},
            "samples": {t: samples[t] for t in names if t in samples}}


def test_lm_eval_average_is_the_leaderboards(tmp_path, monkeypatch):
    """compare's lm-eval `average` on a preset run equals the leaderboard's lm-eval/average for the same
    run: the mean of the preset's headline metrics (arc/hellaswag acc_norm, the mmlu group, gsm8k
    strict-match), computed from the items; not the old mean of every sample task's first metric."""
    import lm_eval

    from selm_bench.evals import lm_eval_suite as L
    from selm_bench.evals.base import EvalContext
    from selm_bench.harness.reports import compare as C
    from selm_bench.harness.run.evaluate import write_suite_result
    from selm_bench.harness.reports.leaderboard import collect_rows

    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kw: _openllm_results(kw["tasks"]))
    monkeypatch.setattr(L, "make_lm", lambda ctx: "lm")
    monkeypatch.setattr(L, "make_task_manager", lambda include_path, names: "tm")
    run = tmp_path / "run"
    folder = run / "evals" / "dpo" / "lm-eval"
    ctx = EvalContext(model="m", name="dpo", out_dir=folder, suite="lm-eval:openllm", preset="openllm")
    write_suite_result(folder, "lm-eval:openllm", ctx, L.run(ctx))  # checks the ids are unique (gsm8k: per filter)
    (run / "manifest.json").write_text(json.dumps({"results": ["evals/dpo/lm-eval"], "stages": {}}))

    expected = (0.75 + 0.5 + 0.5 + 0.75 + 1.0 + 0.25) / 6  # = 0.625, by hand from the samples
    board = collect_rows(run)[0]["lm-eval/average"]
    side = C.parse_side(str(run))
    [suite] = C.compare(side, side, resamples=20)
    point = {m.metric: m for m in suite.metrics}
    assert board == expected == point["average"].base == point["average"].new
    assert point["average"].gated  # the suite's headline is what compare gates by default
    old = (0.5 + 0.25 + 0.5 + 0.5 + 5 / 6 + 1.0 + 0.25) / 7  # each sample task's first metric, the bug
    assert point["average"].base != pytest.approx(old)
    assert (point["gsm8k/exact_match/strict-match"].base, point["gsm8k/exact_match/flexible-extract"].base) == (0.25, 0.75)
    assert suite.shared == 4 + 4 + 2 + 2 + 6 + 2 + 2 * 4
