import json

import pytest
import yaml

from conftest import brainteaser_mirror
from selm_bench.evals import brainteaser as B
from selm_bench.evals.base import EvalContext, SuiteError
from selm_bench.harness.core import registry
from selm_bench.harness.world import write_jsonl

KEYS = ("original", "semantic", "context", "ori_sem", "ori_sem_con", "overall")


def _rec(item_id, correct):
    return {"id": item_id, "correct": correct}


def test_group_metrics_by_hand():
    marks = {  # group: (original, semantic, context)
        "SP-0": (1, 1, 1),  # ori_sem yes, ori_sem_con yes
        "SP-1": (1, 0, 1),  # no, no
        "SP-2": (1, 1, 0),  # yes, no
        "SP-3": (0, 0, 1),  # no, no
    }
    records = [_rec(g + sfx, bool(m)) for g, ms in marks.items() for sfx, m in zip(("", "_SR", "_CR"), ms)]
    assert B.group_metrics(records) == {
        "original": 3 / 4, "semantic": 2 / 4, "context": 3 / 4, "ori_sem": 2 / 4, "ori_sem_con": 1 / 4, "overall": 8 / 12,
    }
    # An incomplete group counts for instance accuracy only.
    partial = B.group_metrics([_rec("WP-7", True), _rec("WP-7_SR", True)])
    assert partial["ori_sem"] == 1.0 and partial["ori_sem_con"] is None and partial["context"] is None


def test_ids_and_group_slices():
    assert [B.kind_of(i) for i in ("SP-0", "SP-0_SR", "SP-10_CR")] == ["original", "semantic", "context"]
    assert B.group_of("WP-12_CR") == B.group_of("WP-12") == "WP-12"
    rows = [{"id": f"SP-{g}{s}"} for g in range(3) for s in ("", "_SR", "_CR")]
    assert [r["id"] for r in B.first_groups(rows, 1)] == ["SP-0", "SP-0_SR", "SP-0_CR"]
    assert len(B.first_groups([{"q": i} for i in range(9)], 2)) == 6


def test_parse_choice():
    choices = ["The moon.", "The sun.", "A star.", "None of above."]
    assert B.parse_choice("(C) A star.", choices) == 2
    assert B.parse_choice("The answer is B", choices) == 1
    assert B.parse_choice("D.", choices) == 3
    assert B.parse_choice("A star, of course", choices) == 2  # an article, not option A
    assert B.parse_choice("I think the sun", choices) == 1
    assert B.parse_choice("4", choices) == 3
    assert B.parse_choice("no idea", choices) is None


def test_missing_data_names_file_and_source(tmp_path):
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path)
    with pytest.raises(SuiteError, match=r"SP_train\.jsonl.*1171-jpg/BrainTeaser.*BTDATA\.zip"):
        B.run(ctx)


class _FakeGenerator:
    def __init__(self, reply):
        self.reply, self.seen = reply, []

    def chat(self, conversations, sampling, desc=""):
        self.seen += conversations
        self.desc, self.sampling = desc, sampling
        return [[self.reply(c[-1]["content"])] for c in conversations]


def test_generate_mode_scores_parsed_letters(tmp_path):
    rows = []
    for g in range(2):  # label = index of the right answer; group 1's semantic row is labelled 2
        for sfx, label in (("", 1), ("_SR", 1 if g == 0 else 2), ("_CR", 1)):
            rows.append({"id": f"SP-{g}{sfx}", "question": f"q{g}{sfx}", "choice_list": ["w", "r", "x", "None of above."],
                         "label": label})
    write_jsonl(tmp_path / "brainteaser" / "SP_train.jsonl", rows)
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"mode": "generate", "puzzles": "SP"})
    ctx._generator = _FakeGenerator(lambda prompt: "(B)")  # always option 1
    res = B.run(ctx)
    assert res.metrics["sp/original"] == 1.0 and res.metrics["sp/semantic"] == 0.5
    assert res.metrics["ori_sem"] == 0.5 and res.metrics["sp/ori_sem_con"] == 0.5
    assert res.metrics["overall"] == 5 / 6 and "wp/overall" not in res.metrics
    assert all(i["pred"] == 1 for i in res.items) and "(A) w" in ctx._generator.seen[0][-1]["content"]
    assert ctx._generator.desc == "brainteaser" and ctx._generator.sampling.max_new_tokens == 32  # the option's default


def test_end_to_end_train_slice(tmp_path, tiny_model):
    data_dir = brainteaser_mirror(tmp_path)
    ctx = EvalContext(model=str(tiny_model), name="m", out_dir=tmp_path / "bt", data_dir=data_dir,
                      options={"limit": 2, "batch_size": 8})
    res = registry.get("suite", "brainteaser")(ctx)
    assert set(res.metrics) == {f"{p}{k}" for p in ("", "sp/", "wp/") for k in KEYS}
    assert all(0.0 <= v <= 1.0 for v in res.metrics.values())
    assert len(res.items) == 12 and res.items[0]["id"] == "SP-0"
    assert res.info == {"split": "train", "puzzles": ["SP", "WP"], "mode": "loglikelihood", "num_fewshot": 0,
                        "n": {"SP": 6, "WP": 6}, "unparsed": 0, "score": "acc"}
    for item in res.items:
        assert {"id", "pred", "label", "correct"} <= set(item) and item["correct"] == (item["pred"] == item["label"])
        assert item["score"] == (1.0 if item["pred"] == item["label"] else 0.0)  # compare's per-item score
    # The metrics by the task's definitions, written out here (not group_metrics): instance accuracy per
    # kind; a group (original, _SR, _CR) counts for ori_sem when original and semantic are both right.
    right = {i["id"]: i["pred"] == i["label"] for i in res.items}
    assert len(right) == 12  # 2 whole groups of 3 per puzzle type

    def expected(ids: list[str]) -> dict[str, float]:
        groups = sorted({i.split("_")[0] for i in ids})
        kind = {"original": "", "semantic": "_SR", "context": "_CR"}
        out = {k: sum(right[g + sfx] for g in groups) / len(groups) for k, sfx in kind.items()}
        out["ori_sem"] = sum(right[g] and right[g + "_SR"] for g in groups) / len(groups)
        out["ori_sem_con"] = sum(right[g] and right[g + "_SR"] and right[g + "_CR"] for g in groups) / len(groups)
        out["overall"] = sum(right[i] for i in ids) / len(ids)
        return out

    want = expected(list(right))
    for p in ("SP", "WP"):
        want.update({f"{p.lower()}/{k}": v for k, v in expected([i for i in right if i.startswith(p)]).items()})
    assert res.metrics == pytest.approx(want)
    config = yaml.safe_load((ctx.out_dir / "tasks" / "brainteaser_sp.yaml").read_text())
    data_file = config["dataset_kwargs"]["data_files"]["test"]
    assert data_file.startswith("/") and len(open(data_file).read().splitlines()) == 6
    saved = json.loads((ctx.out_dir / "results.json").read_text())
    assert saved["n-shot"] == {"brainteaser_sp": 0, "brainteaser_wp": 0}
    assert (ctx.out_dir / "samples_brainteaser_wp.jsonl").exists()


def test_test_split_writes_predictions_only(tmp_path, tiny_model):
    data_dir = brainteaser_mirror(tmp_path)
    ctx = EvalContext(model=str(tiny_model), name="m", out_dir=tmp_path / "bt", data_dir=data_dir,
                      options={"split": "test", "limit": 1, "num_fewshot": 2, "puzzles": ["SP"]})
    res = B.run(ctx)
    assert res.metrics == {} and res.leaderboard_metrics() == {}
    assert "no labels" in res.info["no_accuracy"]
    lines = (ctx.out_dir / "answer_sen.txt").read_text().splitlines()
    assert len(lines) == 3 and all(x in "0123" for x in lines)
    assert not (ctx.out_dir / "answer_word.txt").exists()
    assert [i["pred"] for i in res.items] == [int(x) for x in lines] and all(i["label"] is None for i in res.items)
    demos = yaml.safe_load((ctx.out_dir / "tasks" / "brainteaser_sp.yaml").read_text())["fewshot_config"]["samples"]
    assert len(demos) == 8 and json.loads((ctx.out_dir / "results.json").read_text())["n-shot"]["brainteaser_sp"] == 2


def test_task_yaml_and_acc_norm_choice_by_hand(tmp_path):
    """The local lm-eval task written for a puzzle type (labelled, unlabelled, with demonstrations)
    and lm-eval's choice rules: argmax log-likelihood (acc) or per character (acc_norm)."""
    from selm_bench.evals.brainteaser import _choice_from_lls, write_task

    rows = [{"id": "SP-0", "question": "q", "choice_list": ["a", "bb"], "label": 1}]
    assert write_task(tmp_path, "SP", rows, [], labelled=True) == "brainteaser_sp"
    config = yaml.safe_load((tmp_path / "brainteaser_sp.yaml").read_text())
    data = tmp_path.resolve() / "brainteaser_sp.jsonl"
    assert config == {
        "task": "brainteaser_sp", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "choice_list", "doc_to_target": "label",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0}}
    assert [json.loads(line) for line in data.read_text().splitlines()] == rows
    demos = [{"id": "demo-0", "question": "d", "choice_list": ["x", "y"], "label": 0}]
    write_task(tmp_path, "WP", rows, demos, labelled=False)
    config = yaml.safe_load((tmp_path / "brainteaser_wp.yaml").read_text())
    assert config["doc_to_target"] == "{{label if label is not none else 0}}"
    assert config["fewshot_config"] == {"sampler": "default", "samples": demos}
    # lls -4 and -6 over choices of 2 and 4 characters: acc picks the first, acc_norm (-2 vs -1.5) the second
    assert _choice_from_lls([-4.0, -6.0], ["ab", "abcd"], "acc") == 0
    assert _choice_from_lls([-4.0, -6.0], ["ab", "abcd"], "acc_norm") == 1
