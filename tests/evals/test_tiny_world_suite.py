"""The tiny-world suite with a scripted generator: items, accuracy and score with their standard
errors, per-category accuracy, the generation settings and options, all worked out by hand."""

import json
import math

import pytest

from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.evals.tiny_world import paired, run


class Scripted:
    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def chat(self, convs, sampling, desc=""):
        self.calls.append((convs, sampling, desc))
        return [[r] for r in self.replies[:len(convs)]]


def test_metrics_by_hand(tmp_path):
    rows = [{"id": "e0", "category": "add", "prompt": "p0", "answer": "12"},
            {"id": "e1", "category": "add", "prompt": "p1", "answer": "7"},
            {"id": "e2", "category": "sort", "prompt": "p2", "answer": "1 2 3"},
            {"id": "e3", "category": "sort", "prompt": "p3", "answer": "4 5 6"}]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ctx = EvalContext(model="m", name="sft", out_dir=tmp_path / "o", world_dir=tmp_path,
                      options={"split": "dev", "limit": 3, "max_new_tokens": 5})
    ctx._generator = gen = Scripted(["12", "8", "1 2 3"])
    res = run(ctx)
    (convs, sampling, desc), = gen.calls
    assert convs == [[{"role": "user", "content": f"p{i}"}] for i in range(3)] and desc == "tiny-world sft"
    assert (sampling.n, sampling.temperature, sampling.max_new_tokens) == (1, 0.0, 5)
    # verifier: "12" exact (1), "8" vs "7" single characters: 0.5 x 0 = 0, "1 2 3" exact (1)
    assert [(i["id"], i["response"], i["score"], i["correct"]) for i in res.items] == [
        ("e0", "12", 1.0, True), ("e1", "8", 0.0, False), ("e2", "1 2 3", 1.0, True)]
    se = math.sqrt((2 * (1 / 3) ** 2 + (2 / 3) ** 2) / 2 / 3)  # sample std of (1, 0, 1) over sqrt(3)
    assert res.metrics == pytest.approx({"accuracy": 2 / 3, "accuracy_stderr": se, "score": 2 / 3, "score_stderr": se,
                                         "accuracy/add": 0.5, "accuracy/sort": 1.0})
    assert res.info == {"split": "dev", "n": 3}
    assert paired(res.items) == pytest.approx({"accuracy": 2 / 3, "score": 2 / 3})
    assert paired([]) == {"accuracy": None, "score": None}
    with pytest.raises(SuiteError) as err:
        run(EvalContext(model="m", name="sft", out_dir=tmp_path / "o"))
    assert str(err.value).startswith("tiny-world") and "train-and-eval" in str(err.value)  # where its data comes from
    default = EvalContext(model="m", name="sft", out_dir=tmp_path / "o", world_dir=tmp_path, options={"split": "dev"})
    default._generator = gen = Scripted(["12", "7", "1 2 3", "x"])
    assert len(run(default).items) == 4 and gen.calls[0][1].max_new_tokens == 24  # no limit; 24 tokens by default
