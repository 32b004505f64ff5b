"""BOS, stop tokens and truncation with real tokenizers (micro Mistral with Zephyr's template, micro
Llama-3 with Instruct's): what the tiny world's tokenizer, which has no BOS, cannot show."""

from __future__ import annotations

import pytest

from support.real_models import LLAMA3_BOS, LLAMA3_EOS, LLAMA3_EOT, MISTRAL_BOS, MISTRAL_EOS, micro_llama3, micro_mistral  # noqa: F401

PROMPTS = ["Write a haiku about rain.", "What is 12 + 30?", "Name three rivers in Europe, please, with one fact each."]


def _conv(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _spy_generate(monkeypatch, backend) -> list[dict]:
    calls: list[dict] = []
    real = backend.model.generate

    def spy(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(backend.model, "generate", spy)
    return calls


def test_mistral_generation_starts_with_one_bos_and_equals_a_plain_greedy_generate(micro_mistral, monkeypatch):
    """Zephyr's template writes no BOS; Mistral's tokenizer puts one first. The hf backend's greedy
    answers equal transformers' own generate from the tokenizer's ids of the rendered template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm_bench.trainers.generation import HFBackend, Sampling

    tok = AutoTokenizer.from_pretrained(micro_mistral)
    model = AutoModelForCausalLM.from_pretrained(micro_mistral).eval()
    expected = []
    for p in PROMPTS:
        text = tok.apply_chat_template(_conv(p), tokenize=False, add_generation_prompt=True)
        ids = tok(text)["input_ids"]  # the tokenizer's own special tokens: [BOS] + template
        assert ids[0] == MISTRAL_BOS and ids.count(MISTRAL_BOS) == 1
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=MISTRAL_EOS,
                                 pad_token_id=MISTRAL_EOS)
        expected.append([tok.decode(out[0, len(ids):], skip_special_tokens=True).strip()])
    backend = HFBackend(str(micro_mistral), batch_size=2)
    calls = _spy_generate(monkeypatch, backend)
    got = backend.chat([_conv(p) for p in PROMPTS], Sampling(max_new_tokens=12))
    assert got == expected
    for call in calls:  # every row's first real token (after left padding) is the one BOS
        for ids, mask in zip(call["input_ids"].tolist(), call["attention_mask"].tolist()):
            real = [i for i, m in zip(ids, mask) if m]
            assert real[0] == MISTRAL_BOS and real.count(MISTRAL_BOS) == 1


def test_llama3_generation_keeps_the_templates_bos_and_adds_no_second(micro_llama3, monkeypatch):
    from selm_bench.trainers.generation import HFBackend, Sampling

    backend = HFBackend(str(micro_llama3), batch_size=4)
    calls = _spy_generate(monkeypatch, backend)
    backend.chat([_conv(p) for p in PROMPTS], Sampling(max_new_tokens=4))
    rows = [[i for i, m in zip(ids, mask) if m] for c in calls
            for ids, mask in zip(c["input_ids"].tolist(), c["attention_mask"].tolist())]
    assert len(rows) == len(PROMPTS)
    assert all(r[0] == LLAMA3_BOS and r[1] != LLAMA3_BOS and r.count(LLAMA3_BOS) == 1 for r in rows)


def test_hf_backend_stops_on_the_tokenizers_eos_and_every_generation_config_eos(micro_llama3, monkeypatch):
    """Llama-3-Instruct: the tokenizer's eos is <|eot_id|>, generation_config's [128001, 128009]: both stop."""
    from selm_bench.trainers.generation import HFBackend, Sampling

    backend = HFBackend(str(micro_llama3))
    calls = _spy_generate(monkeypatch, backend)
    backend.chat([_conv("hi")], Sampling(max_new_tokens=2))
    assert sorted(calls[0]["eos_token_id"]) == [LLAMA3_EOS, LLAMA3_EOT]


def test_hf_backend_stops_where_a_generation_config_eos_is_produced(micro_llama3, monkeypatch):
    """A model that always says <|end_of_text|> (128001: generation_config's eos, not the tokenizer's)
    generates one token, not max_new_tokens."""
    import torch
    from transformers import AutoTokenizer

    from selm_bench.trainers.generation import HFBackend, Sampling

    assert AutoTokenizer.from_pretrained(micro_llama3).eos_token_id == LLAMA3_EOT
    backend = HFBackend(str(micro_llama3))
    cfg = backend.model.config
    head = torch.nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[LLAMA3_EOS] = 10.0
    backend.model.lm_head = head
    seen = []
    real = backend.model.generate

    def keep(**kwargs):
        out = real(**kwargs)
        seen.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(backend.model, "generate", keep)
    assert backend.chat([_conv("hi")], Sampling(max_new_tokens=8)) == [[""]]
    assert seen == [1]


@pytest.mark.parametrize("fixture,bos", [("micro_mistral", MISTRAL_BOS), ("micro_llama3", LLAMA3_BOS)])
def test_preference_rows_train_with_exactly_one_bos(fixture, bos, request):
    """DPO and SELM rows (prompt, chosen, rejected, y_ref) start with the model's BOS, once."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm_bench.trainers.selm_trainer import PromptCutDPOConfig, PromptCutDPOTrainer, SELMConfig, SELMTrainer

    path = request.getfixturevalue(fixture)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    rows = [{"prompt": _conv(p), "chosen": [{"role": "assistant", "content": "Yes, gladly."}],
             "rejected": [{"role": "assistant", "content": "No."}],
             "ref_response": [{"role": "assistant", "content": "Maybe later."}]} for p in PROMPTS]
    common = dict(output_dir="/tmp/unused", report_to=[], use_cpu=True, bf16=False, max_length=512)
    for cls, args in ((PromptCutDPOTrainer, PromptCutDPOConfig(**common)), (SELMTrainer, SELMConfig(**common))):
        data = [{k: v for k, v in r.items() if k != "ref_response" or cls is SELMTrainer} for r in rows]
        trainer = cls(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(data), processing_class=tok)
        for ex in trainer.train_dataset:
            assert ex["prompt_ids"][0] == bos and ex["prompt_ids"].count(bos) == 1
            assert bos not in ex["chosen_ids"] + ex["rejected_ids"] + ex.get("ref_response_ids", [])
            assert tok.decode(ex["chosen_ids"], skip_special_tokens=True).strip().startswith("Yes, gladly.")
        assert trainer.row_counts["train"] == {"rows": 3, "trained": 3, "kept": 3, "prompt-cut": 0,
                                               "responses-cut": 0, "dropped": 0}


def test_authors_rule_by_hand():
    """TRL 0.8's rule (the SELM authors'): cut only when prompt + longest response exceed max_length."""
    from selm_bench.trainers.selm_trainer import fit_row

    row = {"prompt_ids": [1, 10, 11, 12, 13, 14], "chosen_ids": [20, 21, 22], "rejected_ids": [30]}
    # 6 + 3 = 9 <= 10: nothing cut
    assert fit_row(row, 10, 3, "authors", bos=1) == {**row, "fit": "kept"}
    # 6 + 3 > 6: the prompt keeps BOS and its last 2 tokens; 3 + 3 fits
    assert fit_row(row, 6, 3, "authors", bos=1) == {"prompt_ids": [1, 13, 14], "chosen_ids": [20, 21, 22],
                                                    "rejected_ids": [30], "fit": "prompt-cut"}
    # still too long: each response keeps max_length - max_prompt_length = 2 tokens
    assert fit_row(row, 5, 3, "authors", bos=1) == {"prompt_ids": [1, 13, 14], "chosen_ids": [20, 21],
                                                    "rejected_ids": [30], "fit": "responses-cut"}
    # no BOS in the tokenizer: the last 3 tokens
    assert fit_row(row, 6, 3, "authors", bos=None)["prompt_ids"] == [12, 13, 14]
    # a BOS the template did not write is put first, once
    assert fit_row({**row, "prompt_ids": [10, 11]}, 10, 3, "authors", bos=1)["prompt_ids"] == [1, 10, 11]
    # no prompt budget and a prompt that fills max_length: dropped
    assert fit_row(row, 6, None, "authors", bos=1)["fit"] == "dropped"
    # today's rule, kept by name: every prompt is cut, a short one too
    assert fit_row(row, 100, 3, "cut-prompt", bos=1) == {"prompt_ids": [1, 13, 14], "chosen_ids": [20, 21, 22],
                                                          "rejected_ids": [30], "fit": "prompt-cut"}


def test_trl_filter_no_longer_drops_rows_silently(tiny_model):
    """A prompt longer than max_length: TRL's own filter would drop it without a word; here the
    authors' rule cuts it to max_prompt_length and it trains, and without a prompt budget it is counted."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm_bench.trainers.selm_trainer import PromptCutDPOConfig, PromptCutDPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    long = "add 12 and 34 then reverse abc and count a in banana " * 4
    rows = [{"prompt": _conv(p), "chosen": [{"role": "assistant", "content": "46"}],
             "rejected": [{"role": "assistant", "content": "22"}]} for p in (long, "add 1 and 2")]
    prompt_ids = tok(tok.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True),
                     add_special_tokens=False)["input_ids"]
    assert len(prompt_ids) > 32
    common = dict(output_dir="/tmp/unused", report_to=[], use_cpu=True, bf16=False, max_length=32)
    cut = PromptCutDPOTrainer(model=model, ref_model=None, args=PromptCutDPOConfig(**common, max_prompt_length=24),
                              train_dataset=Dataset.from_list(rows), processing_class=tok)
    assert len(cut.train_dataset) == 2 and cut.train_dataset[0]["prompt_ids"] == prompt_ids[-24:]
    assert cut.row_counts["train"]["prompt-cut"] == 1 and cut.row_counts["train"]["dropped"] == 0
    whole = PromptCutDPOTrainer(model=model, ref_model=None, args=PromptCutDPOConfig(**common),
                                train_dataset=Dataset.from_list(rows), processing_class=tok)
    assert len(whole.train_dataset) == 1
    assert whole.row_counts["train"] == {"rows": 2, "trained": 1, "kept": 1, "prompt-cut": 0, "responses-cut": 0,
                                         "dropped": 1}
