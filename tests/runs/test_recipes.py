"""The paper's knobs: chunks, the authors' pairing rule with ties, per-iteration learning rates,
prompts cut from the left, `online.start: base`, the reward-model ranker, real prompt data in
UltraFeedback-binarized's schema, and iteration 1 shared by selm and iterative-dpo."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selm_bench.harness.core.config import ConfigError, load_config


def test_chunk_arithmetic():
    from selm_bench.harness.data import chunk_bounds

    four = chunk_bounds(61135, 4)
    assert [e - s for s, e in four] == [15283] * 4 and four[0] == (0, 15283) and four[3] == (45849, 61132)
    assert [e - s for s, e in chunk_bounds(61135, 3)] == [20378] * 3


def test_authors_pairing_rule_with_ties():
    from selm_bench.trainers.online import build_pairs

    prompts = [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}]
    cands = [["g", "c", "r"], ["g", "c", "r"], ["g", "c", "r"], ["same", "same", "x"]]
    scores = [[0.5, 0.9, 0.1], [0.3, 0.3, 0.3], None, [0.7, 0.7, 0.2]]
    records, pairs = build_pairs(prompts, cands, scores)
    assert [(r["chosen"], r["rejected"], r["used"]) for r in records] == [
        ("c", "r", True),        # best -> chosen, worst -> rejected
        ("g", "g", False),       # all tied: the first is both best and worst; dropped by default
        (None, None, False),     # the ranker failed on this prompt
        ("same", "x", True)]     # a tie for best: the first of equals
    _, kept = build_pairs(prompts, cands, scores, keep_ties=True)
    assert [p["prompt"] for p in kept] == ["a", "b", "d"]  # ties kept, failures never


def test_schedule_config_errors(tmp_path):
    for sets, key in [(["online.learning_rate=[1e-4]"], "online.learning_rate: 1 values for 2 iterations"),
                      (["online.learning_rate=[1e-4, -1]"], "online.learning_rate"),
                      (["online.start=base"], "model.pretrained: a `base` start"),
                      (["online.chunks=[1, 2]"], "online.chunks")]:
        with pytest.raises(ConfigError) as err:
            load_config(sets=sets)
        assert str(err.value).startswith(key), str(err.value)
    cfg = load_config(sets=["online.learning_rate=[5e-7, 5e-7, 1e-7]", "online.iterations=3"])
    from selm_bench.harness.run.stages import train_args

    assert [train_args(cfg, "online", t).learning_rate for t in (1, 2, 3)] == [5e-7, 5e-7, 1e-7]


def test_prompts_cut_from_the_left(tiny_model):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm_bench.trainers.selm_trainer import PromptCutDPOConfig, PromptCutDPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    long_prompt = "add 12 and 34 then reverse abc and count a in banana " * 3
    rows = [{"prompt": [{"role": "user", "content": long_prompt}], "chosen": [{"role": "assistant", "content": "46"}],
             "rejected": [{"role": "assistant", "content": "22"}]}]
    full = tok.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    assert len(full_ids) > 12
    args = PromptCutDPOConfig(output_dir="/tmp/unused", max_prompt_length=12, truncation="cut-prompt", report_to=[],
                              use_cpu=True, bf16=False)
    trainer = PromptCutDPOTrainer(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tok)
    example = trainer.train_dataset[0]
    assert example["prompt_ids"] == full_ids[-12:]  # the prompt's last 12 tokens, response untouched
    assert tok.decode(example["chosen_ids"], skip_special_tokens=True).strip() == "46"


def _reward_model(tiny_model: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from tokenizers.processors import TemplateProcessing

    tok = AutoTokenizer.from_pretrained(tiny_model)
    # like Llama's tokenizers, this one prepends a special token unless told not to (the chat template has it already)
    tok._tokenizer.post_processor = TemplateProcessing(single="<unk> $A", special_tokens=[("<unk>", tok.unk_token_id)])
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_reward_model_ranker_equals_unbatched_forward(tiny_model, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from selm_bench.harness.core import registry

    path = _reward_model(tiny_model, tmp_path / "rm")
    ranker = registry.get("ranker", f"reward-model:{path}")(name=f"reward-model:{path}", batch_size=4)
    prompts = [{"prompt": "add 3 and 4"}, {"prompt": "reverse abcd"}, {"prompt": "sort 2 1"}]
    cands = [["7", "8", "seven is the answer"], ["dcba", "abcd"], ["1 2", "2 1", "12"]]
    scores = ranker.score(prompts, cands)
    assert [len(s) for s in scores] == [3, 2, 3]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    for p, cs, got in zip(prompts, cands, scores):
        for c, s in zip(cs, got):  # one sequence, no padding: the reference
            text = tok.apply_chat_template([{"role": "user", "content": p["prompt"]},
                                            {"role": "assistant", "content": c}], tokenize=False)
            with torch.no_grad():
                ref = model(**tok(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
            assert abs(s - ref) < 1e-5
    with pytest.raises(ValueError, match="reward-model needs a model"):
        registry.get("ranker", "reward-model")(name="reward-model")


def test_real_prompt_data_and_schema_errors(tmp_path):
    from datasets import Dataset

    from selm_bench.harness.data import DataError, prepare
    from selm_bench.harness.core.specs import DataSpec

    rows = [{"prompt": f"q{i}", "prompt_id": f"id{i}",
             "chosen": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"good {i}"}],
             "rejected": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"bad {i}"}],
             "score_chosen": 8.0, "score_rejected": 2.0} for i in range(10)]
    Dataset.from_list(rows).to_parquet(str(tmp_path / "uf.parquet"))
    out = tmp_path / "data"
    prepare(DataSpec(source=str(tmp_path / "uf.parquet"), split="train_prefs", chunks=3, expected_rows=10), tmp_path, out)
    chunk2 = [json.loads(line) for line in (out / "chunk-2.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in chunk2] == ["q3", "q4", "q5"] and chunk2[0]["chosen"] == "good 3"
    assert chunk2[0]["rejected"] == "bad 3" and chunk2[0]["id"] == "id3"
    assert json.loads((out / "counts.json").read_text())["chunks"] == {"chunk-1": 3, "chunk-2": 3, "chunk-3": 3}
    Dataset.from_list([{k: v for k, v in r.items() if k != "rejected"} for r in rows]).to_json(str(tmp_path / "bad.jsonl"))
    with pytest.raises(DataError, match=r"missing column 'rejected'"):
        prepare(DataSpec(source=str(tmp_path / "bad.jsonl"), split="x", chunks=1, expected_rows=None), tmp_path, out)
    with pytest.raises(DataError) as err:
        prepare(DataSpec(source=str(tmp_path / "uf.parquet"), split="x", chunks=1, expected_rows=11), tmp_path, out)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'uf.parquet'} [x]: ") and "10 rows" in msg and msg.endswith("11")  # found, expected
    (tmp_path / "uf.csv").write_text("prompt\nq\n")
    for source, token in [(tmp_path / "uf.csv", ".parquet, .jsonl or .json"), (tmp_path / "none.jsonl", "no such file")]:
        with pytest.raises(DataError) as err:
            prepare(DataSpec(source=str(source), split="x", chunks=1, expected_rows=None), tmp_path, out)
        assert str(err.value).startswith(f"{source}: ") and token in str(err.value)


def test_iteration_1_shared_by_selm_and_iterative_dpo():
    from selm_bench.harness.run.stages import plan

    stages, _ = plan(load_config(sets=["methods=[iterative-dpo, selm]"]))
    by = {s.name: s for s in stages}
    assert "selm/iter-1/generate" not in by and "selm/iter-1/rank" not in by
    selm1 = next(s for s in stages if s.checkpoint == "selm/iter-1")
    idpo1 = next(s for s in stages if s.checkpoint == "iterative-dpo/iter-1")
    assert selm1.spec.pairs == idpo1.spec.pairs  # identical pairs, by key
    assert selm1.spec.loss == "selm" and idpo1.spec.loss == "dpo"
    assert by["selm/iter-2/generate"].spec.policy == selm1.ref()  # later iterations: their own policy


def test_micro_run_from_base_with_lr_schedule_and_reward_model(tiny_model, tmp_path):
    """Done-when: the micro config end to end with online.start: base, per-iteration learning
    rates and the reward-model ranker; each iteration's trainer got its own learning rate."""
    rm = _reward_model(tiny_model, tmp_path / "rm")
    micro = {
        "name": "micro-base", "seed": 0, "device": "cpu", "methods": ["selm"], "suites": ["tiny-world"],
        "world": {"n_sft": 16, "n_pref": 8, "n_prompts": 32, "n_dev": 4, "n_eval": 8, "n_two_turn": 2, "n_mc": 4},
        "model": {"pretrained": str(tiny_model)},
        "online": {"start": "base", "iterations": 2, "learning_rate": [1e-4, 5e-5], "batch_size": 8,
                   "num_samples": 2, "max_new_tokens": 6, "ranker": f"reward-model:{rm}", "keep_ties": True,
                   "max_prompt_length": 64},
        "suite_options": {"tiny-world": {"max_new_tokens": 6}},
    }
    cfg = tmp_path / "micro.yaml"
    cfg.write_text(yaml.safe_dump(micro))
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "train-and-eval", "--config", str(cfg), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (out / "checkpoints" / "sft").exists() and not (out / "checkpoints" / "dpo").exists()
    lrs = [json.loads((out / f"checkpoints/selm/iter-{t}/model/train_info.json").read_text())["learning_rate"]
           for t in (1, 2)]
    assert lrs == [1e-4, 5e-5]
    spec = json.loads((out / "checkpoints/selm/iter-1/model/spec.json").read_text())
    assert spec["policy"] == {"path": str(tiny_model), "key": ""}
    manifest = json.loads((out / "manifest.json").read_text())
    rank = manifest["stages"]["checkpoints/selm/iter-1/rank"]
    assert rank["ranker_failures"] == 0 and rank["pairs"] == rank["prompts"] == 16  # keep_ties: every prompt
    rows = json.loads((out / "leaderboard.json").read_text())
    assert [r["checkpoint"] for r in rows] == ["selm/iter-1", "selm/iter-2"]


REPO = Path(__file__).resolve().parents[2]


def _plan(recipe: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "selm_bench.harness.cli", "plan", "--config", str(REPO / "configs" / recipe),
                          "--format", "json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def test_plan_zephyr_recipe_offline():
    d = _plan("zephyr-7b.yaml")
    by = {s["name"]: s for s in d["stages"]}
    assert by["data"]["rows"] == 61135 and by["data"]["chunk_rows"] == 15283
    dpo = by["dpo"]
    assert dpo["model"] == dpo["reference"] == "HuggingFaceH4/mistral-7b-sft-beta"
    assert dpo["inputs"][-1] == "data/chunk-1.jsonl" and dpo["rows"] == 15283
    assert (dpo["beta"], dpo["learning_rate"], dpo["global_batch"]) == (0.01, 5e-7, "256 = 8 x 8 x 4")
    for method, alpha in (("iterative-dpo", 0.0), ("selm", 0.001)):
        iters = [by[f"{method}/iter-{t}"] for t in (1, 2, 3)]
        assert [s["learning_rate"] for s in iters] == [5e-7, 5e-7, 1e-7]
        assert {(s["beta"], s["alpha"], s["global_batch"], s["max_length"], s["max_prompt_length"], s["nll_weight"])
                for s in iters} == {(0.01, alpha, "256 = 8 x 8 x 4", 1024, 512, 0.0)}
        assert [s["model"] for s in iters] == ["checkpoints/dpo/model"] + [f"checkpoints/{method}/iter-{t}/model" for t in (1, 2)]
        assert all(s["model"] == s["reference"] and s["rows"] == 15283 for s in iters)
    gens = [by[f"iterative-dpo/iter-{t}/generate"] for t in (1, 2, 3)]
    assert [g["inputs"][1] for g in gens] == ["data/chunk-2.jsonl", "data/chunk-3.jsonl", "data/chunk-4.jsonl"]
    assert gens[0]["generations"] == 15283 and by["iterative-dpo/iter-1/rank"]["ranker"] == "pairrm"
    assert "selm/iter-1/generate" not in by  # shared with iterative-dpo
    evals = [s for s in d["stages"] if s["kind"] == "eval"]
    assert {s["suite"] for s in evals} == {"mt-bench", "alpaca-eval", "lm-eval:openllm"} and len(evals) == 7 * 3
    mt = next(s for s in evals if s["suite"] == "mt-bench")
    assert (mt["generations"], mt["judge_calls"], mt["judge"]) == (160, 160, "openai:gpt-4")
    assert {a["name"] for a in d["artefacts"]} >= {"HuggingFaceH4/mistral-7b-sft-beta",
                                                   "HuggingFaceH4/ultrafeedback_binarized", "llm-blender/PairRM-hf"}
    # the openllm preset's tasks, none of them a hub repo (lm-eval fetches each task's dataset at run time)
    assert [a["name"] for a in d["artefacts"] if a["kind"] == "lm-eval task"] == [
        "arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu", "winogrande", "gsm8k"]
    assert {a["name"] for a in d["artefacts"] if a["where"] == "hub"} == {
        "HuggingFaceH4/mistral-7b-sft-beta", "HuggingFaceH4/ultrafeedback_binarized", "llm-blender/PairRM-hf"}
    assert d["totals"]["gpu_hours"] > 0 and d["totals"]["judge_usd"] > 0


def test_plan_llama3_recipe_offline():
    d = _plan("llama-3-8b-instruct.yaml")
    by = {s["name"]: s for s in d["stages"]}
    assert by["data"]["chunk_rows"] == 20378 and "dpo" not in by and "sft" not in by
    iters = [by[f"selm/iter-{t}"] for t in (1, 2, 3)]
    assert [s["learning_rate"] for s in iters] == [5e-7, 3e-7, 1e-7]
    assert {(s["alpha"], s["global_batch"]) for s in iters} == {(0.0001, "128 = 8 x 4 x 4")}
    assert iters[0]["model"] == "meta-llama/Meta-Llama-3-8B-Instruct" and iters[0]["rows"] == 20378
    assert [by[f"iterative-dpo/iter-{t}/generate"]["inputs"][1] for t in (1, 2, 3)] == [
        "data/chunk-1.jsonl", "data/chunk-2.jsonl", "data/chunk-3.jsonl"]
    assert {by[f"iterative-dpo/iter-{t}"]["alpha"] for t in (1, 2, 3)} == {0.0}


def test_judge_ranker_against_a_loopback_endpoint(tmp_path, monkeypatch):
    """Pairwise wins from a fake OpenAI-compatible judge that prefers the response saying 'good';
    a rerun is served from the cache; a prompt whose comparison fails is None (counted)."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from conftest import send_json
    from selm_bench.harness.core import registry

    calls = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = body["messages"][-1]["content"]
            calls.append(text)
            a = text.split("[Response A]\n", 1)[1].split("\n[End of response A]", 1)[0]
            b = text.split("[Response B]\n", 1)[1].split("\n[End of response B]", 1)[0]
            if "broken" in text:
                return send_json(self, 500, {"error": {"message": "injected"}})
            verdict = "[[C]]" if ("good" in a) == ("good" in b) else ("[[A]]" if "good" in a else "[[B]]")
            if "garbled" in text:
                verdict = "I cannot decide."
            send_json(self, 200, {"id": "x", "object": "chat.completion", "created": int(time.time()), "model": "m",
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": f"Verdict: {verdict}"}}],
                                  "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        kw = dict(name="judge:fake-judge", cache_dir=str(tmp_path / "cache"),
                  base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", max_retries=0, concurrency=2)
        prompts = [{"prompt": "p1"}, {"prompt": "p2 broken"}, {"prompt": "p3 garbled"}]
        cands = [["bad one", "good one", "also bad"], ["good", "bad"], ["good", "bad"]]
        ranker = registry.get("ranker", "judge:fake-judge")(**kw)
        scores = ranker.score(prompts, cands)
        assert scores[0] == [0.5, 2.0, 0.5]  # by hand: good beats both; the two bad ones tie
        assert scores[1] is None and scores[2] is None
        assert [e.partition(": ")[0] for e in ranker.errors] == ["prompt 1", "prompt 2"]  # one line each, by prompt
        assert "call failed" in ranker.errors[0] and "verdict" in ranker.errors[1]
        first = len(calls)
        assert first == 3 + 1 + 1
        again = registry.get("ranker", "judge:fake-judge")(**kw).score(prompts[:1], cands[:1])
        assert again == [[0.5, 2.0, 0.5]] and len(calls) == first  # all three from the cache
    finally:
        server.shutdown()
        server.server_close()


def test_ranker_failures_are_counted_and_fail_the_stage_past_the_fraction(tmp_path):
    from selm_bench.harness.core import registry
    from selm_bench.harness.core.specs import RankSpec, Ref
    from selm_bench.harness.world import write_jsonl
    from selm_bench.trainers.online import rank

    @registry.register_ranker("flaky-test", help="fails on prompts containing 'x'")
    class Flaky:
        def __init__(self, **_):
            self.errors = ["injected"]

        def score(self, prompts, candidates):
            return [None if "x" in p["prompt"] else [float(len(c)) for c in cands] for p, cands in zip(prompts, candidates)]

    rows = [{"prompt": p, "candidates": ["a", "bbb"], "y_ref": "a"} for p in ("p1", "p2", "x3", "p4")]
    write_jsonl(tmp_path / "c.jsonl", rows)
    ok = RankSpec(candidates=Ref(path=str(tmp_path / "c.jsonl")), ranker="flaky-test", max_failures=0.25)
    rank(ok, tmp_path, tmp_path / "ok")
    info = json.loads((tmp_path / "ok" / "stage_info.json").read_text())
    assert (info["prompts"], info["ranker_failures"], info["pairs"]) == (4, 1, 3)
    failed = [json.loads(line) for line in (tmp_path / "ok" / "generations.jsonl").read_text().splitlines()][2]
    assert failed["used"] is False and failed["scores"] is None
    strict = ok.model_copy(update={"max_failures": 0.2})
    with pytest.raises(RuntimeError) as err:
        rank(strict, tmp_path, tmp_path / "strict")
    assert "1/4" in str(err.value) and str(err.value).endswith("online.max_ranker_failures = 0.2")
    assert not (tmp_path / "strict").exists()


def test_plan_json_shows_every_training_hyperparameter_of_the_recipe():
    """The zephyr recipe's values (configs/zephyr-7b.yaml, read by hand) in every training stage of
    `plan --format json`, with the ZeRO-3 strategy of the shipped accelerate config."""
    from selm_bench.harness.run.plan import describe

    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "configs" / "zephyr-7b.yaml",
                      sets=["launch.launcher=accelerate", "launch.num_processes=8",
                            f"launch.accelerate_config={repo / 'configs/accelerate/zero3.yaml'}"])
    train = [s for s in describe(cfg)["stages"] if s["kind"] in ("sft", "preference")]
    assert len(train) == 1 + 2 * 3  # dpo, then 3 iterations of selm and of iterative-dpo
    for s in train:
        t = s["train"]
        assert (t["lr_scheduler"], t["warmup_ratio"], t["optim"], t["precision"], t["truncation"]) == (
            "cosine", 0.1, "adamw_torch", "bf16", "authors")
        assert (t["strategy"]["kind"], t["strategy"]["zero_stage"], t["num_processes"], t["seed"]) == ("deepspeed", 3, 8, 42)
        assert (s["max_length"], s["max_prompt_length"]) == (1024, 512)
