"""`selm-bench compare`: paired bootstrap on synthetic runs with a known, planted effect; then its
pieces on hand-made items (sides, seed groups, the bootstrap's percentiles, verdicts and gates at the
interval's edges, the text and json reports)."""

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from selm_bench.harness.cli import app
from selm_bench.harness.reports import compare as C
from support.run_files import stand_in_suites, write_json, write_result


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
        ([str(a), str(a), "--metric", "tiny-world/nope"], "'tiny-world/nope'"),
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


def text_report(text: str) -> dict:
    """compare's text report as data: the base and new lines, per suite its counts (paired, then the
    excluded only-in-base and only-in-new where any) and its metric lines split into tokens, the
    result's first word, and the columns where each metric line's arrow sits."""
    head, *blocks = text.rstrip("\n").split("\n\n")
    *blocks, result = blocks
    suites = []
    for block in blocks:
        title, *metric_lines = block.splitlines()
        suites.append((title.split(":")[0], [int(n) for n in re.findall(r"\d+", title)],
                       [line.split() for line in metric_lines]))
    arrows = {line.index(" -> ") for block in blocks for line in block.splitlines()[1:]}
    return {"head": head.splitlines(), "suites": suites, "result": result.split()[:2], "arrows": arrows}


def test_text_report_values_verdicts_and_result():
    base = C.Side("a:dpo", [Path("a")], "dpo")
    new = C.Side("g:selm", [Path("g/s0"), Path("g/s1")], "selm")
    M = C.MetricResult
    ok = C.SuiteComparison("tiny-world", 400, 0, 0, [
        M("tiny-world", "accuracy", 0.5, 0.61234, 0.11234, 0.05, 0.17, "improved", True, 0.01, False),
        M("tiny-world", "score", None, 0.7, None, None, None, "no significant change", False, 0.0, False)])
    bad = C.SuiteComparison("mt-bench", 10, 2, 1, [
        M("mt-bench", "score", 7.0, 6.0, -1.0, -1.5, -0.5, "regressed", True, 0.25, True)])
    text = C.to_text(base, new, [ok])
    assert text.endswith("\n") and not text.endswith("\n\n")
    report = text_report(text)
    assert report["head"][0] == "base: a:dpo" and report["head"][1].startswith("new:  g:selm")
    assert "2 seeds" in report["head"][1]  # a seed group is said to be a mean
    # 4 significant digits; "-" for no value; the gate and its threshold on the gated metric
    assert report["suites"] == [("tiny-world", [400], [
        ["accuracy", "0.5", "->", "0.6123", "delta", "0.1123", "95%", "CI", "[0.05,", "0.17]", "improved", "[gate,",
         "threshold", "0.01]"],
        ["score", "-", "->", "0.7", "delta", "-", "95%", "CI", "[-,", "-]", "no", "significant", "change"]])]
    assert report["result"] == ["result:", "ok"] and len(report["arrows"]) == 1  # the metric columns line up
    report = text_report(C.to_text(new, base, [bad]))
    assert report["head"][0].startswith("base: g:selm") and report["head"][1] == "new:  a:dpo"
    assert report["suites"] == [("mt-bench", [10, 2, 1], [
        ["score", "7", "->", "6", "delta", "-1", "95%", "CI", "[-1.5,", "-0.5]", "regressed", "[gate,", "threshold",
         "0.25]", "REGRESSION"]])]
    assert report["result"] == ["result:", "REGRESSION"]
    # excluded items are said when only one side has extras; a suite without pairs has no metric lines
    report = text_report(C.to_text(base, new, [C.SuiteComparison("mt-bench", 3, 0, 1, [bad.metrics[0]]),
                                               C.SuiteComparison("tiny-world", 0, 0, 0, [])]))
    assert [(suite, counts, len(lines)) for suite, counts, lines in report["suites"]] == [
        ("mt-bench", [3, 0, 1], 1), ("tiny-world", [0], 0)]
    assert text_report(C.to_text(base, base, [C.SuiteComparison("mt-bench", 3, 2, 0, [])]))["suites"] == [
        ("mt-bench", [3, 2, 0], [])]


def test_a_seed_groups_items_are_averaged_once_every_seed_run_is_finished(tmp_path):
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
    assert str(err.value).startswith(f"{tmp_path / 'g'}:") and "not finished" in str(err.value)
    assert str(err.value).endswith(str(tmp_path / "g" / "../s1"))  # the missing seed run is named
    write_run(tmp_path / "s1", base_items(4))
    assert side_runs(tmp_path / "g") == [tmp_path / "g" / "../s0", tmp_path / "g" / "../s1"]
    with pytest.raises(CompareError) as err:
        side_runs(tmp_path)
    assert str(err.value).startswith(f"{tmp_path}:") and "not a run folder" in str(err.value)
    assert "seeds.json" in str(err.value)


# ---------------------------------------------------------------- the pieces, on hand-made items
@pytest.fixture
def suites(monkeypatch):
    return stand_in_suites(monkeypatch)


def items_run(root: Path, checkpoints: dict[str, list[dict]], suite: str = "tiny-world") -> Path:
    """A run with one `suite` result per checkpoint and the given items.jsonl records."""
    results = []
    for ckpt, items in checkpoints.items():
        results.append(write_result(root, f"evals/{ckpt}/{suite}", suite, ckpt, {"accuracy": 0.5}, info={}))
        (root / "evals" / ckpt / suite / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    write_json(root / "manifest.json", {"results": results})
    return root


def known_metrics(message: str) -> list[str]:
    """The metrics an unknown-metric error offers (the list after its last colon)."""
    return message.rsplit(": ", 1)[1].split(", ")


def test_a_side_is_a_run_and_a_checkpoint_defaulting_to_the_last(tmp_path):
    item = [{"id": "a", "score": 1.0}]
    run = items_run(tmp_path / "a", {"sft": item, "dpo": item})
    write_result(run / "imports", "x", "mt-bench", "gpt4-ref", {"score": 9.0}, method="reference")  # not ours
    assert C.parse_side(str(run)) == C.Side(label=f"{run}:dpo", runs=[run], checkpoint="dpo")  # leaderboard order's last
    assert C.parse_side(f"{run}:sft") == C.Side(label=f"{run}:sft", runs=[run], checkpoint="sft")
    empty = tmp_path / "empty"
    write_json(empty / "manifest.json", {"results": []})
    missing = tmp_path / "missing"
    # (argument, what the message starts with, tokens it holds)
    for arg, start, tokens in [(f"{run}:nope", f"{run}:", ("'nope'", "sft, dpo")),
                               (f"{run}:gpt4-ref", f"{run}:", ("'gpt4-ref'", "sft, dpo")),  # an import is no checkpoint
                               (str(empty), f"{empty}:", ("no results",)),
                               (str(missing), "", ("not found", str(missing))),
                               (f"{missing}:sft", "", ("not found", str(missing)))]:
        with pytest.raises(C.CompareError) as err:
            C.parse_side(arg)
        assert str(err.value).startswith(start) and all(t in str(err.value) for t in tokens), str(err.value)
    with pytest.raises(C.CompareError) as err:
        C.parse_side(f"{run}:nope")
    assert str(err.value).endswith("sft, dpo")  # the checkpoints it has, in leaderboard order


def test_side_items_keep_the_suites_and_ids_every_seed_has(tmp_path):
    r0 = items_run(tmp_path / "s0", {"sft": [{"id": 1, "score": 0.0}, {"id": 2, "score": 1.0}, {"id": 3, "score": 1.0},
                                             {"score": 1.0}]})  # a record without id is no item
    with open(r0 / "evals/sft/tiny-world/items.jsonl", "a") as f:
        f.write("\n   \n")  # blank lines are skipped
    write_result(r0, "evals/sft/mt-bench", "mt-bench", "sft", {"score": 5.0})  # no items.jsonl: not comparable
    r1 = items_run(tmp_path / "s1", {"sft": [{"id": "2", "score": 0.0}, {"id": "3", "score": 1.0},
                                             {"id": "4", "score": 1.0}]})
    items_run(r1, {"sft": [{"id": "q", "score": 5.0}]}, suite="mt-bench")
    items_run(r0, {"sft": [{"id": "z", "score": 1.0}]}, suite="brainteaser")  # only the first seed has it
    # ids are compared as strings; each shared item's numbers averaged (the id kept from the first seed)
    assert C.side_items(C.Side("g", [r0, r1], "sft")) == {
        "tiny-world": {"2": {"id": 2, "score": 0.5}, "3": {"id": 3, "score": 1.0}}}
    assert C._suite_items(r1, "sft") == {"tiny-world": {"2": {"id": "2", "score": 0.0}, "3": {"id": "3", "score": 1.0},
                                                        "4": {"id": "4", "score": 1.0}},
                                         "mt-bench": {"q": {"id": "q", "score": 5.0}}}


def test_paired_bootstrap_interval_is_numpys_percentiles_of_the_resampled_deltas(monkeypatch):
    planned = [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3], [0, 1, 2, 3]]
    calls = []

    class Rng:
        def integers(self, low, high, size):
            calls.append((low, high, size))
            return np.array(planned[len(calls) - 2])  # calls[0] is the seed

    monkeypatch.setattr(C.np.random, "default_rng", lambda seed: calls.append(("seed", seed)) or Rng())

    def paired(items):
        return {"s": sum(i["v"] for i in items) / len(items), "none": None}

    base = [{"v": 0.0}] * 4
    new = [{"v": 0.0}, {"v": 1.0}, {"v": 2.0}, {"v": 3.0}]
    out = C.paired_bootstrap(base, new, paired, resamples=5, seed=7)
    # deltas per resample: 0, 1, 2, 3, 1.5 -> sorted [0, 1, 1.5, 2, 3]; numpy's linear percentile:
    # 2.5th at position 0.025 * 4 = 0.1 -> 0.1; 97.5th at 3.9 -> 2 + 0.9 * (3 - 2) = 2.9
    assert out["s"] == (0.0, 1.5, pytest.approx(0.1), pytest.approx(2.9))
    assert out["none"] == (None, None, None, None)
    assert list(out) == ["s", "none"]
    assert calls == [("seed", 7), *[(0, 4, 4)] * 5]


BASE_ITEMS = {"tiny-world": {"a": {"id": "a", "score": 1.0}, "b": {"id": "b", "score": 0.0},
                             "c": {"id": "c", "score": None}, "x": {"id": "x", "score": 1.0}},
              "mt-bench": {"q": {"id": "q", "score": None}},
              "brainteaser": {"p": {"id": "p", "score": 1.0}}}
NEW_ITEMS = {"tiny-world": {"a": {"id": "a", "score": 0.0}, "b": {"id": "b", "score": 1.0},
                            "c": {"id": "c", "score": 1.0}, "y": {"id": "y", "score": 1.0}},
             "mt-bench": {"q": {"id": "q", "score": 5.0}}}
# metric -> (base, new, low, high): boundaries on purpose (low exactly 0, high exactly 0)
BOOT = {"accuracy": (0.5, 0.75, 0.0, 0.25), "score": (0.5, 0.25, -0.5, 0.0), "up": (0.25, 0.5, 0.125, 0.375),
        "down": (0.75, 0.25, -0.75, -0.25), "none": (None, 0.5, None, None)}
TW_METRICS = ["tiny-world/accuracy", "tiny-world/down", "tiny-world/none", "tiny-world/score", "tiny-world/up"]


@pytest.fixture
def planted(monkeypatch, suites):
    """Sides whose items are BASE_ITEMS and NEW_ITEMS, and a bootstrap that answers BOOT (recording its calls)."""
    registry = suites
    boots = []
    monkeypatch.setattr(C, "side_items", lambda side: BASE_ITEMS if side.label == "a:sft" else NEW_ITEMS)

    def fake_bootstrap(base_items, new_items, paired, resamples, seed):
        boots.append((base_items, new_items, paired, resamples, seed))
        return dict(BOOT)

    monkeypatch.setattr(C, "paired_bootstrap", fake_bootstrap)
    return C.Side("a:sft", [Path("a")], "sft"), C.Side("b:dpo", [Path("b")], "dpo"), boots, registry


def test_verdict_is_improved_or_regressed_only_when_the_interval_excludes_zero(planted):
    base, new, boots, registry = planted
    results = C.compare(base, new, seed=3, resamples=10)
    M = C.MetricResult
    assert results == [
        C.SuiteComparison("mt-bench", 0, 0, 0, []),  # its one item is unscored in base: nothing paired
        C.SuiteComparison("tiny-world", 2, 1, 1, [  # a, b shared (c unscored in base); x only in base, y only in new
            M("tiny-world", "accuracy", 0.5, 0.75, 0.25, 0.0, 0.25, "no significant change", True, 0.0, False),
            M("tiny-world", "score", 0.5, 0.25, -0.25, -0.5, 0.0, "no significant change", False, 0.0, False),
            M("tiny-world", "up", 0.25, 0.5, 0.25, 0.125, 0.375, "improved", False, 0.0, False),
            M("tiny-world", "down", 0.75, 0.25, -0.5, -0.75, -0.25, "regressed", False, 0.0, False),
            M("tiny-world", "none", None, 0.5, None, None, None, "no data", False, 0.0, False)])]
    assert C.failed(results) is False  # down regressed, but only the headline (accuracy) is gated
    assert len(boots) == 1
    b_items, n_items, paired, resamples, seed = boots[0]
    assert (b_items, n_items, resamples, seed) == ([BASE_ITEMS["tiny-world"]["a"], BASE_ITEMS["tiny-world"]["b"]],
                                                   [NEW_ITEMS["tiny-world"]["a"], NEW_ITEMS["tiny-world"]["b"]], 10, 3)
    assert paired is registry.entry("suite", "tiny-world").paired


def test_a_gated_metric_fails_only_beyond_its_threshold(planted, monkeypatch):
    base, new, _, _ = planted

    def by_name(results):
        return {m.metric: (m.gated, m.threshold, m.failed) for c in results for m in c.metrics}

    # down's upper end -0.25 is not below -0.25: at the threshold it does not fail
    edge = C.compare(base, new, gated=["tiny-world/down", "tiny-world/score", "tiny-world/none"],
                     thresholds={"tiny-world/down": 0.25, "tiny-world/score": 0.5})
    assert by_name(edge) == {"accuracy": (False, 0.0, False), "score": (True, 0.5, False), "up": (False, 0.0, False),
                             "down": (True, 0.25, False), "none": (True, 0.0, False)}
    assert C.failed(edge) is False
    beyond = C.compare(base, new, gated=["tiny-world/down"], thresholds={"tiny-world/down": 0.125})
    assert by_name(beyond)["down"] == (True, 0.125, True) and C.failed(beyond) is True
    # a threshold alone keeps the default gate (the headline)
    alone = C.compare(base, new, thresholds={"tiny-world/accuracy": 0.5})
    assert by_name(alone)["accuracy"] == (True, 0.5, False) and by_name(alone)["down"] == (False, 0.0, False)
    boots = []
    monkeypatch.setattr(C, "paired_bootstrap", lambda *a: boots.append(a[3:]) or dict(BOOT))
    C.compare(base, new)
    assert boots == [(1000, 0)]  # the defaults: 1000 resamples, seed 0
    with pytest.raises(C.CompareError) as err:
        C.compare(base, new, thresholds={"tiny-world/nope": 1.0})
    assert "'tiny-world/nope'" in str(err.value) and known_metrics(str(err.value)) == TW_METRICS


def test_gates_may_name_a_metric_of_any_shared_suite(monkeypatch, suites):
    items = {"mt-bench": {"q": {"id": "q", "score": 5.0}}, "tiny-world": {"a": {"id": "a", "score": 1.0}}}
    monkeypatch.setattr(C, "side_items", lambda side: items)
    monkeypatch.setattr(C, "paired_bootstrap", lambda *a: {"score": (5.0, 5.0, 0.0, 0.0)})
    results = C.compare(C.Side("a", [], "sft"), C.Side("b", [], "dpo"), gated=["mt-bench/score"])
    assert [(c.suite, [(m.metric, m.gated) for m in c.metrics]) for c in results] == [
        ("mt-bench", [("score", True)]), ("tiny-world", [("score", False)])]
    with pytest.raises(C.CompareError) as err:
        C.compare(C.Side("a", [], "sft"), C.Side("b", [], "dpo"), gated=["x/y"])
    assert "'x/y'" in str(err.value) and known_metrics(str(err.value)) == ["mt-bench/score", "tiny-world/score"]


def test_sides_without_a_shared_suite_are_an_error_naming_both(monkeypatch, suites):
    monkeypatch.setattr(C, "side_items", lambda side: {"mt-bench": {}} if side.label == "a:sft" else {"brainteaser": {}})
    with pytest.raises(C.CompareError) as err:
        C.compare(C.Side("a:sft", [], "sft"), C.Side("b:dpo", [], "dpo"))
    assert "(a:sft vs b:dpo)" in str(err.value) and "\n" not in str(err.value)


def test_json_report_carries_both_sides_runs_seed_and_every_metric():
    base = C.Side("a:sft", [Path("a")], "sft")
    new = C.Side("g:dpo", [Path("g/s0"), Path("g/s1")], "dpo")
    bad = C.MetricResult("mt-bench", "score", 7.0, 6.0, -1.0, -1.5, -0.5, "regressed", True, 0.25, True)
    results = [C.SuiteComparison("mt-bench", 3, 0, 1, [bad]), C.SuiteComparison("tiny-world", 0, 0, 0, [])]
    text = C.to_json(base, new, results, seed=5)
    assert text.startswith('{\n  "base"')  # indented by two
    assert list(json.loads(text)) == ["base", "new", "base_runs", "new_runs", "seed", "suites", "failed"]
    assert json.loads(text) == {
        "base": "a:sft", "new": "g:dpo", "base_runs": ["a"], "new_runs": ["g/s0", "g/s1"], "seed": 5,
        "suites": [{"suite": "mt-bench", "shared": 3, "only_base": 0, "only_new": 1, "metrics": [
            {"suite": "mt-bench", "metric": "score", "base": 7.0, "new": 6.0, "delta": -1.0, "low": -1.5, "high": -0.5,
             "verdict": "regressed", "gated": True, "threshold": 0.25, "failed": True}]},
            {"suite": "tiny-world", "shared": 0, "only_base": 0, "only_new": 0, "metrics": []}],
        "failed": True}


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
