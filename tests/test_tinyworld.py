import json
import random

import pytest

from selm_bench.harness.config import WorldConfig
from selm_bench.harness.tinyworld import CATEGORIES, GENERATORS, build_world, read_jsonl, verify


def test_verifier_exact_partial_and_empty():
    assert verify("add", "42", "42") == 1.0
    assert verify("add", "42", " 42. ") == 1.0
    assert verify("add", "42", "") == 0.0
    partial = verify("add", "42", "43")
    assert 0 < partial < 1 and partial == pytest.approx(0.25)  # one of two digits matches -> 0.5 * 0.5
    assert verify("sort", "3 7 19", "3 19 7") == pytest.approx(0.5 * 2 / 3)
    assert verify("reverse", "a b c", "x y z") == 0.0
    assert verify("extract", "fox", "FOX") == 1.0


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_generator_is_verifiable(category):
    rng = random.Random(3)
    for _ in range(50):
        task = GENERATORS[category](rng)
        assert verify(category, task.answer, task.answer) == 1.0
        assert verify(category, task.answer, task.mistake) < 1.0
        assert verify(category, task.answer, task.wrong(rng)) < 1.0


def test_world_is_deterministic_and_splits_are_disjoint(tmp_path):
    cfg = WorldConfig(n_sft=300, n_pref=60, n_prompts=60, n_dev=40, n_eval=80, n_two_turn=20, n_mc=30)
    counts = build_world(cfg, seed=7, out=tmp_path / "a")
    build_world(cfg, seed=7, out=tmp_path / "b")
    for name in counts:
        assert (tmp_path / "a" / f"{name}.jsonl").read_text() == (tmp_path / "b" / f"{name}.jsonl").read_text()
    rows = {n: read_jsonl(tmp_path / "a" / f"{n}.jsonl") for n in counts}
    held_out = {r["prompt"] for n in ("eval", "dev", "mc") for r in rows[n]} | {r["turns"][0] for r in rows["two_turn"]}
    train = {r["prompt"] for n in ("pref", "prompts") for r in rows[n]} | {r["prompt"][0]["content"] for r in rows["sft"]}
    assert not held_out & train
    assert {r["category"] for r in rows["eval"]} == set(CATEGORIES)
    for r in rows["mc"]:
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        assert verify(r["category"], r["choices"][r["label"]], r["choices"][r["label"]]) == 1.0
    for r in rows["pref"]:
        assert verify(r["category"], r["answer"], r["chosen"]) == 1.0 > verify(r["category"], r["answer"], r["rejected"])


def test_sft_noise_uses_the_systematic_mistake(tmp_path):
    cfg = WorldConfig(n_sft=600, n_pref=8, n_prompts=8, n_dev=8, n_eval=8, n_two_turn=4, n_mc=4, sft_noise=0.4,
                      two_turn_fraction=0.0)
    build_world(cfg, seed=1, out=tmp_path)
    rows = read_jsonl(tmp_path / "sft.jsonl")
    noisy = [r for r in rows if r["completion"][0]["content"] != r["answer"]]
    assert 0.3 < len(noisy) / len(rows) < 0.5
    assert all(verify(r["category"], r["answer"], r["completion"][0]["content"]) < 1 for r in noisy)


def test_tokenizer_and_model_load_with_auto_classes(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    q = "ann has 7 pens and gets 15 more . How many pens ?"
    text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
    assert text == f"<|user|>{q}<|end|><|assistant|>"
    ids = tok(q, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids).strip() == q
    assert len(tok("15", add_special_tokens=False)["input_ids"]) == 3  # "▁", "1", "5": digits stay separate
    assert model.config.vocab_size == len(tok)


def test_every_split_tokenizes_without_unknowns(tiny_world, tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    texts = []
    for split in ("eval", "dev", "mc", "two_turn", "sft", "pref", "prompts"):
        for r in read_jsonl(tiny_world / f"{split}.jsonl"):
            for key in ("prompt", "answer", "chosen", "rejected"):
                if isinstance(r.get(key), str):
                    texts.append(r[key])
            for t in r.get("turns", []) + r.get("answers", []) + r.get("choices", []):
                texts.append(t)
            for m in (r["prompt"] + r["completion"]) if split == "sft" else []:
                texts.append(m["content"])
    for t in texts:
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids, t
        assert tok.decode(ids).strip() == t.strip()
