"""The online rank stage's rankers and its records (trainers/rankers.py, trainers/online.py): a ranker's
model parameter, the pairwise judge's messages, verdicts, pair order and failures, the oracle's graded
verifier, a reward model's batched scores (stand-ins instead of models and judges), and what the rank
stage writes. Every expected value is written by hand from the inputs and the documented behaviour."""

import json
import types

import pytest
import torch

from selm_bench.harness.world import write_jsonl
from support.stand_ins import OneEntryRegistry, fake_loaders


def test_a_rankers_model_is_everything_after_the_first_colon():
    from selm_bench.trainers.rankers import _parameter

    assert _parameter("judge:gpt-4o", "judge") == "gpt-4o"
    assert _parameter("reward-model:org/rm:v2", "reward-model") == "org/rm:v2"  # only the first colon splits
    for name in ("judge", "judge:"):
        with pytest.raises(ValueError) as err:
            _parameter(name, "judge")
        assert str(err.value).startswith("ranker judge ") and str(err.value).endswith("judge:<hub id or local path>")


def test_the_judge_is_shown_the_request_and_both_responses_and_told_the_three_verdicts():
    from selm_bench.trainers.rankers import pairwise_messages

    system, user = pairwise_messages("Add 2 and 3", "5", "6")
    assert (system["role"], user["role"]) == ("system", "user")
    assert all(v in system["content"] for v in ("[[A]]", "[[B]]", "[[C]]"))  # the verdicts parse_verdict reads
    assert all(w in system["content"] for w in ("helpful", "correct", "length", "order"))  # what to weigh, what not
    assert user["content"].splitlines() == ["[User request]", "Add 2 and 3", "", "[Response A]", "5",
                                            "[End of response A]", "", "[Response B]", "6", "[End of response B]"]


@pytest.mark.parametrize("text, share", [
    (None, None),
    ("Verdict: [[A]]", 1.0),
    ("[[B]] is better", 0.0),
    ("a tie: [[C]]", 0.5),
    ("[[A]] ... on reflection [[A]]", 1.0),  # the same verdict twice is still one verdict
    ("[[A]] or maybe [[B]]", None),  # two different verdicts: none
    ("A is better", None),
    ("[A]", None),
    ("", None),
])
def test_a_verdict_counts_only_when_it_is_one_of_a_b_or_c(text, share):
    from selm_bench.trainers.rankers import parse_verdict

    assert parse_verdict(text) == share


class _FakeJudge:
    """Stands in for evals.openai_judge.OpenAIJudge: records its construction and requests, answers
    from a script (one verdict per request, in order)."""

    made: list = []
    script: list = []

    def __init__(self, **kw):
        _FakeJudge.made.append(kw)
        self.checked = 0
        self.asked = []

    def check(self):
        self.checked += 1

    def chat_many(self, requests, **kw):
        self.asked.append((requests, kw))
        return list(_FakeJudge.script[:len(requests)])

    def accounting(self):
        return {"calls": 11, "cached": 0}


@pytest.fixture
def fake_judge(monkeypatch):
    from selm_bench.evals import openai_judge

    monkeypatch.setattr(_FakeJudge, "made", [])
    monkeypatch.setattr(_FakeJudge, "script", [])
    monkeypatch.setattr(openai_judge, "OpenAIJudge", _FakeJudge)
    return _FakeJudge


def test_the_judge_ranker_builds_its_judge_from_the_name_and_options(fake_judge):
    from selm_bench.trainers.rankers import JudgeRanker

    r = JudgeRanker(name="judge:gpt-x")
    assert fake_judge.made == [{"spec": "openai:gpt-x", "cache_dir": None, "base_url": None, "concurrency": 8,
                                "max_retries": 5, "timeout": 60}]
    assert r.judge.checked == 1 and r.errors == []
    JudgeRanker(name="judge:m:1", cache_dir="/c", base_url="http://h/v1", concurrency=2, max_retries=1, timeout=5.5,
                device="cuda", batch_size=3)
    assert fake_judge.made[1] == {"spec": "openai:m:1", "cache_dir": "/c", "base_url": "http://h/v1", "concurrency": 2,
                                  "max_retries": 1, "timeout": 5.5}
    assert r.accounting() == {"calls": 11, "cached": 0}
    with pytest.raises(ValueError, match="judge:<"):
        JudgeRanker(name="judge")
    assert len(fake_judge.made) == 2  # no judge built for a nameless ranker


def test_the_judge_ranker_sees_every_pair_once_in_a_fixed_order_and_records_failures(fake_judge):
    """Every pair once, in the order i < j; the pair's A/B slots follow sha256(f"{c_i}\\0{c_j}")[0] odd = swap:
    first bytes (hashlib, by hand): x,y 206 keep; x,z 147 swap; x,w 27 swap; y,z 112 keep; y,w 69 swap;
    z,w 9 swap; y,x 63 swap; u,v 100 keep."""
    from selm_bench.trainers.rankers import JudgeRanker, pairwise_messages

    prompts = [{"prompt": "p0"}, {"prompt": "p1"}, {"prompt": "p2"}, {"prompt": "p3"}]
    cands = [["x", "y", "z", "w"], ["x", "y", "z"], ["u", "v"], ["y", "x"]]
    fake_judge.script = ["[[A]]", "[[A]]", "[[C]]", "[[B]]", "[[A]]", "[[A]]",  # p0: 6 pairs
                         None, "[[A]]", "[[B]]",  # p1: its first call failed; the rest are skipped
                         "both are fine",  # p2: no verdict
                         "[[A]]"]  # p3
    r = JudgeRanker(name="judge:m")
    scores = r.score(prompts, cands)
    # p0: (A=x,B=y) A -> x+1; (A=z,B=x) A -> z+1; (A=w,B=x) C -> w+.5, x+.5; (A=y,B=z) B -> z+1;
    #     (A=w,B=y) A -> w+1; (A=w,B=z) A -> w+1.  => x 1.5, y 0, z 2, w 2.5
    # p3: (A=x,B=y) A -> x (index 1) wins
    assert scores == [[1.5, 0.0, 2.0, 2.5], None, None, [0.0, 1.0]]
    assert [e.partition(": ")[0] for e in r.errors] == ["prompt 1", "prompt 2"]  # one line each, by prompt
    assert "call failed" in r.errors[0] and "verdict" in r.errors[1]
    (requests, kw), = r.judge.asked
    assert kw == {"temperature": 0.0, "max_tokens": 1024}
    slots = [("p0", "x", "y"), ("p0", "z", "x"), ("p0", "w", "x"), ("p0", "y", "z"), ("p0", "w", "y"), ("p0", "w", "z"),
             ("p1", "x", "y"), ("p1", "z", "x"), ("p1", "y", "z"), ("p2", "u", "v"), ("p3", "x", "y")]
    assert requests == [pairwise_messages(*s) for s in slots]


def test_the_oracle_ranker_scores_with_the_graded_verifier():
    from selm_bench.trainers.rankers import OracleRanker

    r = OracleRanker(name="oracle", device="cuda", batch_size=2)
    prompts = [{"category": "add", "answer": "42", "prompt": "q"}, {"category": "reverse", "answer": "c b a", "prompt": "r"}]
    # "41" vs "42": one token, so characters: 1 of 2 match, ratio 2*1/4 = 0.5, half of it 0.25
    assert r.score(prompts, [["42", "41", ""], ["C B A."]]) == [[1.0, 0.25, 0.0], [1.0]]


class _FakeRMTokenizer:
    def __init__(self, pad_token=None):
        self.pad_token = pad_token
        self.eos_token = "</s>"
        self.padding_side = "left"
        self.calls = []

    @property
    def pad_token_id(self):
        return {"</s>": 2, "<pad>": 0}[self.pad_token]

    def apply_chat_template(self, conv, tokenize):
        assert tokenize is False
        return "|".join(f"{m['role']}:{m['content']}" for m in conv)

    def __call__(self, texts, **kw):
        self.calls.append((list(texts), kw))
        tok = self

        class Enc(dict):
            def to(self, device):
                tok.calls[-1] = (*tok.calls[-1], device)
                return self

        # one "token" per text: its length, so the stand-in model's reward is the text's length
        return Enc(input_ids=torch.tensor([[float(len(t))] for t in texts]))


class _FakeRM:
    def __init__(self, num_labels=1):
        self.config = types.SimpleNamespace(pad_token_id=None, num_labels=num_labels)
        self.moved, self.evaluated, self.grad = None, False, []

    def to(self, device):
        self.moved = device
        return self

    def eval(self):
        self.evaluated = True
        return self

    def __call__(self, input_ids):
        self.grad.append(torch.is_grad_enabled())
        return types.SimpleNamespace(logits=torch.cat([input_ids, -input_ids], dim=1))


def _fake_rm_stack(monkeypatch, tokenizer, model):
    return fake_loaders(monkeypatch, tokenizer, "AutoModelForSequenceClassification", model)


def test_a_reward_model_scores_prompt_and_candidate_in_batches_without_gradients(monkeypatch):
    from selm_bench.trainers.rankers import RewardModelRanker

    tok, model = _FakeRMTokenizer(), _FakeRM()
    loaded = _fake_rm_stack(monkeypatch, tok, model)
    r = RewardModelRanker(name="reward-model:org/rm:v1", device="cuda:1", batch_size=2, trust_remote_code=True)
    assert loaded == {"tokenizer": ("org/rm:v1", {"trust_remote_code": True}),
                      "model": ("org/rm:v1", {"trust_remote_code": True})}
    assert (tok.padding_side, tok.pad_token, model.config.pad_token_id) == ("right", "</s>", 2)
    assert (model.moved, model.evaluated) == ("cuda:1", True)
    assert r.texts("hi", "yo") == "user:hi|assistant:yo"
    scores = r.score([{"prompt": "ab"}, {"prompt": "c"}], [["1", "22", "333"], ["4444", "55555"]])
    # reward = len("user:" + prompt + "|assistant:" + candidate) = 16 + len(prompt) + len(candidate)
    assert scores == [[19.0, 20.0, 21.0], [21.0, 22.0]]
    texts = ["user:ab|assistant:1", "user:ab|assistant:22", "user:ab|assistant:333", "user:c|assistant:4444",
             "user:c|assistant:55555"]
    kw = {"return_tensors": "pt", "padding": True, "add_special_tokens": False}
    assert tok.calls == [(texts[:2], kw, "cuda:1"), (texts[2:4], kw, "cuda:1"), (texts[4:], kw, "cuda:1")]
    assert model.grad == [False, False, False]  # scored under no_grad


def test_a_reward_model_keeps_its_own_pad_token_and_batches_16_by_default(monkeypatch):
    from selm_bench.trainers.rankers import RewardModelRanker

    tok, model = _FakeRMTokenizer(pad_token="<pad>"), _FakeRM()
    model.config.pad_token_id = 5
    loaded = _fake_rm_stack(monkeypatch, tok, model)
    r = RewardModelRanker(name="reward-model:rm")
    assert loaded["model"] == ("rm", {"trust_remote_code": False}) and model.moved == "cpu"
    assert (tok.pad_token, model.config.pad_token_id) == ("<pad>", 5)
    r.score([{"prompt": "p"}], [[str(i) for i in range(17)]])
    assert [len(texts) for texts, *_ in tok.calls] == [16, 1]


def test_a_reward_model_needs_a_name_and_exactly_one_output(monkeypatch):
    from selm_bench.trainers.rankers import RewardModelRanker

    _fake_rm_stack(monkeypatch, _FakeRMTokenizer(), _FakeRM())
    with pytest.raises(ValueError) as err:
        RewardModelRanker(name="reward-model")
    assert str(err.value).startswith("ranker reward-model ") and "reward-model:<" in str(err.value)
    _fake_rm_stack(monkeypatch, _FakeRMTokenizer(), _FakeRM(num_labels=2))
    with pytest.raises(ValueError) as err:
        RewardModelRanker(name="reward-model:/rm")
    assert str(err.value).startswith("reward-model:/rm: ") and str(err.value).endswith("has 2")



class _PlainRanker:
    """No `accounting`, no `errors`: the stage records empty ones. Fails on prompts naming 'x'."""

    def __init__(self, **kw):
        pass

    def score(self, prompts, candidates):
        return [None if "x" in p["prompt"] else [float(len(c)) for c in cands] for p, cands in zip(prompts, candidates)]


def test_the_rank_stage_records_each_prompt_and_a_summary_for_a_plain_ranker(monkeypatch, tmp_path):
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.trainers import online

    monkeypatch.setattr(online, "registry", OneEntryRegistry("ranker", "plain", _PlainRanker))
    said = []
    monkeypatch.setattr(online, "say", said.append)
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": p, "candidates": ["a", "bb"], "y_ref": "a"} for p in ("p1", "p2", "x3", "p4")])
    spec = RankSpec(candidates=Ref(path="c.jsonl"), ranker="plain", max_failures=0.25)  # 1 of 4 failed: at the limit
    online.rank(spec, tmp_path, tmp_path / "r")
    recs = [json.loads(line) for line in (tmp_path / "r" / "generations.jsonl").read_text().splitlines()]
    ok = {"candidates": ["a", "bb"], "scores": [1.0, 2.0], "chosen": "bb", "rejected": "a", "used": True, "y_ref": "a"}
    assert recs == [{"prompt": "p1", **ok}, {"prompt": "p2", **ok},
                    {"prompt": "x3", "candidates": ["a", "bb"], "scores": None, "chosen": None, "rejected": None,
                     "used": False, "y_ref": "a"},
                    {"prompt": "p4", **ok}]
    assert json.loads((tmp_path / "r" / "stage_info.json").read_text()) == {
        "prompts": 4, "ranker": "plain", "ranker_failures": 1, "ranker_calls": {}, "ranker_failure_fraction": 0.25,
        "ranker_errors": [], "pairs": 3, "tie_pairs": 0}
    (line,) = said
    assert line.split()[:2] == ["3/4", "prompts"] and line.endswith("(1 ranker failures)")
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "candidates": ["a", "bb"], "y_ref": "a"}])
    online.rank(spec.model_copy(update={"candidates": Ref(path="d.jsonl")}), tmp_path, tmp_path / "d")
    assert said[-1].split()[:2] == ["1/1", "prompts"] and "failures" not in said[-1]  # none failed: not said


def test_the_rank_stage_counts_the_tie_pairs_it_keeps_with_keep_ties(monkeypatch, tmp_path):
    """keep_ties keeps a prompt whose candidates all tie (chosen = rejected): counted in the record."""
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.trainers import online

    monkeypatch.setattr(online, "registry", OneEntryRegistry("ranker", "plain", _PlainRanker))
    monkeypatch.setattr(online, "say", lambda line: None)
    # lengths 1, 1 (a tie), 1, 2 (not), 2, 2 (a tie)
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": f"p{i}", "candidates": c, "y_ref": c[0]}
                                       for i, c in enumerate([["a", "b"], ["a", "bb"], ["cc", "dd"]])])
    spec = RankSpec(candidates=Ref(path="c.jsonl"), ranker="plain", keep_ties=True)
    online.rank(spec, tmp_path, tmp_path / "r")
    info = json.loads((tmp_path / "r" / "stage_info.json").read_text())
    assert (info["pairs"], info["tie_pairs"]) == (3, 2)


def test_a_pair_record_keeps_the_prompt_row_and_adds_candidates_scores_and_the_pair():
    from selm_bench.trainers.online import build_pairs

    records, pairs = build_pairs([{"id": 1, "prompt": "p"}, {"id": 2, "prompt": "q"}], [["a", "b"], ["c", "d"]],
                                 [[0.1, 0.2], None])
    assert records == [
        {"id": 1, "prompt": "p", "candidates": ["a", "b"], "scores": [0.1, 0.2], "chosen": "b", "rejected": "a", "used": True},
        {"id": 2, "prompt": "q", "candidates": ["c", "d"], "scores": None, "chosen": None, "rejected": None, "used": False}]
    assert pairs == [records[0]]

