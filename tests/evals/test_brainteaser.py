"""The BrainTeaser suite (evals/brainteaser.py): its data files and their errors, the group metrics,
the prompt, the answer parser, and both modes (loglikelihood through a local lm-eval task, generate
through the backend), with stand-ins and on the tiny model; expected values worked out by hand."""

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
    # lm-eval renders doc_to_target with jinja2: an unlabelled row gets target 0, a labelled one its label
    import jinja2

    target = jinja2.Template(config["doc_to_target"])
    assert (target.render(label=None), target.render(label=2)) == ("0", "2")
    assert config["fewshot_config"] == {"sampler": "default", "samples": demos}
    # lls -4 and -6 over choices of 2 and 4 characters: acc picks the first, acc_norm (-2 vs -1.5) the second
    assert _choice_from_lls([-4.0, -6.0], ["ab", "abcd"], "acc") == 0
    assert _choice_from_lls([-4.0, -6.0], ["ab", "abcd"], "acc_norm") == 1


# ---------------------------------------------------------------- data files
def test_a_missing_puzzle_file_names_the_file_and_the_source(tmp_path):
    for data_dir, path in ((tmp_path, f"{tmp_path}/brainteaser/WP_dev.jsonl"),
                           (None, "<data_dir unset>/brainteaser/WP_dev.jsonl")):
        with pytest.raises(SuiteError) as err:
            B.load_rows(data_dir, "WP", "dev")
        msg = str(err.value)
        assert msg.startswith("brainteaser: missing ") and path in msg
        assert "1171-jpg/BrainTeaser" in msg and "BTDATA.zip" in msg and ".npy" in msg  # where to get it, how
    write_jsonl(tmp_path / "brainteaser" / "WP_dev.jsonl", [{"id": "WP-0"}])
    assert B.load_rows(tmp_path, "WP", "dev") == [{"id": "WP-0"}]


def test_the_declared_data_files_are_exactly_what_a_default_run_reads(tmp_path):
    """The files the suite declares under eval.data_dir (listed and checked by `selm-bench plan`) are the
    default run's: split train, both puzzle types (docs/suites.md, brainteaser/{SP,WP}_<split>.jsonl).
    Preflight passes with exactly those files and fails naming whichever one is missing."""
    declared = registry.suite_entry("brainteaser").data_files
    assert sorted(declared) == ["brainteaser/SP_train.jsonl", "brainteaser/WP_train.jsonl"]
    for f in declared:
        write_jsonl(tmp_path / f, [{"id": "SP-0", "question": "q?", "choice_list": ["a", "b"], "label": 0}])
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "out", data_dir=tmp_path)
    B.preflight(ctx)
    for f in declared:
        (tmp_path / f).rename(tmp_path / "aside.jsonl")
        with pytest.raises(SuiteError) as err:
            B.preflight(ctx)
        assert f in str(err.value)
        (tmp_path / "aside.jsonl").rename(tmp_path / f)


def _demos(root, n):
    write_jsonl(root / "brainteaser" / "demonstration.jsonl",
                [{"Question": f"Demo {i}?", "Answer": f"RIGHT{i}", "Choice1": "x", "label": 1,
                  "choice_list": [f"WRONG{i}", f"RIGHT{i}"]} for i in range(n)])


def test_demonstrations_are_read_in_the_suites_schema_and_counted(tmp_path):
    assert B.load_demos(None, 0) == []  # zero-shot needs no file
    _demos(tmp_path, 2)
    both = [{"id": "demo-0", "question": "Demo 0?", "choice_list": ["WRONG0", "RIGHT0"], "label": 1},
            {"id": "demo-1", "question": "Demo 1?", "choice_list": ["WRONG1", "RIGHT1"], "label": 1}]
    assert B.load_demos(tmp_path, 1) == both  # the whole pool (lm-eval's sampler draws from it)
    assert B.load_demos(tmp_path, 2) == both  # exactly as many as there are is fine
    with pytest.raises(SuiteError) as err:
        B.load_demos(tmp_path, 3)
    assert "num_fewshot=3" in str(err.value) and "has 2 " in str(err.value)
    for data_dir, path in ((tmp_path / "empty", f"{tmp_path}/empty/brainteaser/demonstration.jsonl"),
                           (None, "<data_dir unset>/brainteaser/demonstration.jsonl")):
        with pytest.raises(SuiteError) as err:
            B.load_demos(data_dir, 1)
        assert path in str(err.value) and "Prompting/demonstration.npy" in str(err.value)


# ---------------------------------------------------------------- metrics, prompts, parsing
def test_a_group_without_its_semantic_member_counts_for_instance_accuracy_only():
    records = [{"id": "SP-0", "correct": True}, {"id": "SP-0_CR", "correct": True},
               {"id": "SP-1", "correct": True}, {"id": "SP-1_SR", "correct": False}]
    # ori_sem only over SP-1 (True and False); no group is complete; overall 3 of 4
    assert B.group_metrics(records) == {"original": 1.0, "semantic": 0.0, "context": 1.0, "ori_sem": 0.0,
                                        "ori_sem_con": None, "overall": 0.75}


def test_paired_instance_accuracies_by_kind():
    items = [{"id": "SP-0", "score": 1.0}, {"id": "SP-0_SR", "score": 0.0}, {"id": "SP-0_CR", "score": None},
             {"id": "SP-1", "score": 0.0}, {"id": "SP-1_CR", "score": 1.0}]
    # scored: 1, 0, 0, 1 -> overall 0.5; original (1, 0), semantic (0), context (1; the None one left out)
    assert B.paired(items) == {"overall": 0.5, "original": 0.5, "semantic": 0.0, "context": 1.0}
    assert B.paired([]) == {"overall": None, "original": None, "semantic": None, "context": None}


LETTER_LINE = "Answer with the letter of the correct option."


def test_the_generate_prompt_lists_lettered_options_then_asks_for_a_letter():
    """The prompt the model sees in generate mode is the contract, so it is compared whole."""
    row = {"question": "What has keys?", "choice_list": ["A piano.", "A door."]}
    assert B.render_question(row) == "What has keys?\n(A) A piano.\n(B) A door.\nAnswer with the letter of the correct option."


def test_norm_and_the_most_specific_option_wins():
    assert B._norm("  The  Sun!\n") == "the sun"  # lower, one space per run, no punctuation, stripped
    # both options are mentioned; the longer (more specific) one is chosen
    assert B.parse_choice("the sun rises", ["sun", "The sun rises."]) == 1


# ---------------------------------------------------------------- generate mode, scripted replies
def _by_first_line(replies):
    """A reply function for _FakeGenerator: the reply for the prompt's first line (its question)."""
    return lambda prompt: replies[prompt.split("\n")[0]]


def _bt_rows(puzzle, labels, groups=2):
    """`groups` puzzle groups; question "<puzzle> q<g><suffix>", choices c0-c2 + None of above, extra keys."""
    return [{"id": f"{puzzle}-{g}{sfx}", "question": f"{puzzle} q{g}{sfx}", "answer": "ignored",
             "choice_list": ["c0", "c1", "c2", "None of above."], "label": label}
            for g in range(groups) for sfx, label in zip(("", "_SR", "_CR"), labels)]


def test_generate_mode_whole_result_with_one_shot(tmp_path):
    from selm_bench.trainers.generation import Sampling

    write_jsonl(tmp_path / "brainteaser" / "SP_train.jsonl", _bt_rows("SP", (0, 1, 2)))
    write_jsonl(tmp_path / "brainteaser" / "WP_train.jsonl", _bt_rows("WP", (0, 2, 1)))
    _demos(tmp_path, 2)
    replies = {"SP q0": "(A)", "SP q0_SR": "B.", "SP q0_CR": "no idea",
               "WP q0": "(D)", "WP q0_SR": "The answer is C", "WP q0_CR": "(B)"}
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path, seed=5,
                      options={"mode": "generate", "num_fewshot": 1, "limit": 1, "max_new_tokens": 7})
    ctx._generator = gen = _FakeGenerator(_by_first_line(replies))
    res = B.run(ctx)

    # SP: (A)=0 right, B.=1 right, unparsed wrong; WP: (D)=3 wrong, C=2 right, (B)=1 right
    assert res.items == [
        {"id": "SP-0", "puzzle": "SP", "pred": 0, "label": 0, "response": "(A)", "correct": True, "score": 1.0,
         "kind": "original"},
        {"id": "SP-0_SR", "puzzle": "SP", "pred": 1, "label": 1, "response": "B.", "correct": True, "score": 1.0,
         "kind": "semantic"},
        {"id": "SP-0_CR", "puzzle": "SP", "pred": None, "label": 2, "response": "no idea", "correct": False,
         "score": 0.0, "kind": "context"},
        {"id": "WP-0", "puzzle": "WP", "pred": 3, "label": 0, "response": "(D)", "correct": False, "score": 0.0,
         "kind": "original"},
        {"id": "WP-0_SR", "puzzle": "WP", "pred": 2, "label": 2, "response": "The answer is C", "correct": True,
         "score": 1.0, "kind": "semantic"},
        {"id": "WP-0_CR", "puzzle": "WP", "pred": 1, "label": 1, "response": "(B)", "correct": True, "score": 1.0,
         "kind": "context"}]
    assert res.metrics == {
        "original": 0.5, "semantic": 1.0, "context": 0.5, "ori_sem": 0.5, "ori_sem_con": 0.0, "overall": 4 / 6,
        "sp/original": 1.0, "sp/semantic": 1.0, "sp/context": 0.0, "sp/ori_sem": 1.0, "sp/ori_sem_con": 0.0,
        "sp/overall": 2 / 3,
        "wp/original": 0.0, "wp/semantic": 1.0, "wp/context": 1.0, "wp/ori_sem": 0.0, "wp/ori_sem_con": 0.0,
        "wp/overall": 2 / 3}
    assert res.info == {"split": "train", "puzzles": ["SP", "WP"], "mode": "generate", "num_fewshot": 1,
                        "n": {"SP": 3, "WP": 3}, "unparsed": 1}
    # one demonstration (the first) as an earlier turn, answered with its labelled choice (prompts whole)
    assert len(gen.seen) == 6 and gen.seen[0] == [
        {"role": "user", "content": f"Demo 0?\n(A) WRONG0\n(B) RIGHT0\n{LETTER_LINE}"},
        {"role": "assistant", "content": "(B) RIGHT0"},
        {"role": "user", "content": f"SP q0\n(A) c0\n(B) c1\n(C) c2\n(D) None of above.\n{LETTER_LINE}"}]
    assert gen.sampling == Sampling(max_new_tokens=7, seed=5) and gen.desc == "brainteaser"


def test_generate_mode_on_the_test_split_writes_submission_files_only(tmp_path):
    for p in ("SP", "WP"):
        write_jsonl(tmp_path / "brainteaser" / f"{p}_test.jsonl",
                    [{"question": f"{p} t{i}", "choice_list": ["c0", "c1", "c2", "c3"]} for i in range(2)])
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"mode": "generate", "split": "test"})
    ctx._generator = _FakeGenerator(_by_first_line({"SP t0": "(C)", "SP t1": "hmm", "WP t0": "hmm", "WP t1": "A."}))
    res = B.run(ctx)
    assert res.metrics == {}
    assert (ctx.out_dir / "answer_sen.txt").read_text() == "2\n-1\n"  # unparsed -> -1
    assert (ctx.out_dir / "answer_word.txt").read_text() == "-1\n0\n"
    assert res.items == [
        {"id": "SP-test-0", "puzzle": "SP", "pred": 2, "label": None, "response": "(C)", "score": None},
        {"id": "SP-test-1", "puzzle": "SP", "pred": None, "label": None, "response": "hmm", "score": None},
        {"id": "WP-test-0", "puzzle": "WP", "pred": None, "label": None, "response": "hmm", "score": None},
        {"id": "WP-test-1", "puzzle": "WP", "pred": 0, "label": None, "response": "A.", "score": None}]
    info = dict(res.info)
    reason = info.pop("no_accuracy")
    assert info == {"split": "test", "puzzles": ["SP", "WP"], "mode": "generate", "num_fewshot": 0,
                    "n": {"SP": 2, "WP": 2}, "unparsed": 2}
    assert "no labels" in reason and "answer_sen.txt, answer_word.txt" in reason and "SemEval-2024" in reason


def test_rows_with_ids_but_no_labels_are_not_scored(tmp_path):
    write_jsonl(tmp_path / "brainteaser" / "SP_test.jsonl",
                [{"id": "SP-7", "question": "SP t0", "choice_list": ["c0", "c1", "c2", "c3"]}])
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"mode": "generate", "split": "test", "puzzles": ["SP"]})
    ctx._generator = _FakeGenerator(_by_first_line({"SP t0": "(B)"}))
    res = B.run(ctx)
    assert res.metrics == {} and (ctx.out_dir / "answer_sen.txt").read_text() == "1\n"
    assert [i["score"] for i in res.items] == [None]


# ---------------------------------------------------------------- loglikelihood mode, a stand-in lm-eval
def _fake_run_local_task(monkeypatch, resps):
    """B.run_local_task replaced: lm-eval-shaped samples (in reverse doc order) for the rows that
    write_task put in the task folder, with the given filtered_resps and acc/acc_norm per row id."""
    calls = []

    def fake(ctx, task_dir, names, num_fewshot, predict_only=False):
        calls.append((task_dir, names, num_fewshot, predict_only))
        samples = {}
        for name in names:
            rows = [json.loads(line) for line in (task_dir / f"{name}.jsonl").read_text().splitlines()]
            samples[name] = [{"doc_id": i, "doc": r, **resps[r["id"]]} for i, r in enumerate(rows)][::-1]
        return {"samples": samples}

    monkeypatch.setattr(B, "run_local_task", fake)
    return calls


def test_loglikelihood_mode_acc_norm_records_and_metrics(tmp_path, monkeypatch):
    rows = [{"id": f"SP-0{s}", "question": f"q{s}", "choice_list": ["ab", "abcd"], "label": label}
            for s, label in (("", 1), ("_SR", 0), ("_CR", 1))]
    write_jsonl(tmp_path / "brainteaser" / "SP_train.jsonl", rows)
    # acc_norm = log-likelihood per character: SP-0 -4/2=-2 vs -6/4=-1.5 -> 1; SP-0_SR the same -> 1;
    # SP-0_CR -2/2=-1 vs -1.5 -> 0. The greedy flags point elsewhere on purpose.
    calls = _fake_run_local_task(monkeypatch, {
        "SP-0": {"filtered_resps": [(-4.0, True), (-6.0, False)], "acc": 0.0, "acc_norm": 1.0},
        "SP-0_SR": {"filtered_resps": [(-4.0, True), (-6.0, False)], "acc": 1.0, "acc_norm": 0.0},
        "SP-0_CR": {"filtered_resps": [(-2.0, False), (-6.0, True)], "acc": 0.0, "acc_norm": 0.0}})
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"puzzles": "SP", "score": "acc_norm"})
    res = B.run(ctx)
    assert calls == [(ctx.out_dir / "tasks", ["brainteaser_sp"], 0, False)]
    assert res.items == [
        {"id": "SP-0", "puzzle": "SP", "pred": 1, "label": 1, "correct": True, "score": 1.0, "kind": "original"},
        {"id": "SP-0_SR", "puzzle": "SP", "pred": 1, "label": 0, "correct": False, "score": 0.0, "kind": "semantic"},
        {"id": "SP-0_CR", "puzzle": "SP", "pred": 0, "label": 1, "correct": False, "score": 0.0, "kind": "context"}]
    one = {"original": 1.0, "semantic": 0.0, "context": 0.0, "ori_sem": 0.0, "ori_sem_con": 0.0, "overall": 1 / 3}
    assert res.metrics == {**one, **{f"sp/{k}": v for k, v in one.items()}}
    assert res.info == {"split": "train", "puzzles": ["SP"], "mode": "loglikelihood", "num_fewshot": 0,
                        "n": {"SP": 3}, "unparsed": 0, "score": "acc_norm"}


def test_loglikelihood_mode_on_the_test_split_is_predict_only(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "brainteaser" / "WP_test.jsonl", [{"question": "q", "choice_list": ["ab", "abcd"]}])
    _demos(tmp_path, 2)
    calls = _fake_run_local_task(monkeypatch, {"WP-test-0": {"filtered_resps": [(-5.0, True), (-3.0, False)]}})
    ctx = EvalContext(model="unused", name="m", out_dir=tmp_path / "bt", data_dir=tmp_path,
                      options={"puzzles": ["WP"], "split": "test", "num_fewshot": 1})
    res = B.run(ctx)
    assert calls == [(ctx.out_dir / "tasks", ["brainteaser_wp"], 1, True)]
    assert res.items == [{"id": "WP-test-0", "puzzle": "WP", "pred": 1, "label": None, "score": None}]  # acc: -3 > -5
    assert (ctx.out_dir / "answer_word.txt").read_text() == "1\n" and res.metrics == {}
    assert not (ctx.out_dir / "answer_sen.txt").exists()
    config = yaml.safe_load((ctx.out_dir / "tasks" / "brainteaser_wp.yaml").read_text())
    assert config["fewshot_config"]["samples"] == [
        {"id": "demo-0", "question": "Demo 0?", "choice_list": ["WRONG0", "RIGHT0"], "label": 1},
        {"id": "demo-1", "question": "Demo 1?", "choice_list": ["WRONG1", "RIGHT1"], "label": 1}]
    assert res.info["score"] == "acc"
    assert "answer_word.txt" in res.info["no_accuracy"] and "answer_sen.txt" not in res.info["no_accuracy"]
