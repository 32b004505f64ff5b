"""Real-shaped micro models, built at test time from installed packages, never from the hub.

- **micro Mistral**: Mistral-7B v0.1's own sentencepiece tokenizer (`mistral_common/data/tokenizer.model.v1`,
  Apache-2.0), converted by transformers, with Zephyr's chat template (which writes no BOS: the
  tokenizer must add it) and a tiny random `MistralForCausalLM` over its 32,000 pieces.
- **micro Llama-3**: Llama-3's tiktoken ranks (`llama_models/llama3/tokenizer.model`, Meta's licence:
  built here at test time, nothing of it is committed), converted by transformers' `TikTokenConverter`,
  with Llama-3-Instruct's chat template (which writes `<|begin_of_text|>` itself) and a
  generation_config whose eos is [128001, 128009], as the real Instruct model's is.

Both models are random (hidden 64, 2 layers): what they say is noise, but their tokens, special
ids and templates are the real ones, which is what BOS, stop-token and truncation bugs depend on.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# The chat templates as the models' hub repositories ship them (HuggingFaceH4/zephyr-7b-beta and
# meta-llama/Meta-Llama-3-8B-Instruct), in Jinja.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
MISTRAL_BOS, MISTRAL_EOS = 1, 2
LLAMA3_BOS, LLAMA3_EOS, LLAMA3_EOT = 128000, 128001, 128009


def _package_file(module: str, *parts: str) -> Path:
    try:
        mod = __import__(module, fromlist=["__file__"])
    except ImportError:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")
    path = Path(mod.__file__).parent.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is missing from the installed {module}")
    return path


def mistral_tokenizer(out: Path):
    """Mistral-7B v0.1's tokenizer (fast, converted from its sentencepiece model) with Zephyr's template."""
    from transformers import LlamaTokenizer

    src = _package_file("mistral_common", "data", "tokenizer.model.v1")
    raw = out / "_spm"
    raw.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, raw / "tokenizer.model")  # LlamaTokenizer(vocab_file=...) would silently ignore it
    tok = LlamaTokenizer.from_pretrained(str(raw), legacy=True, add_bos_token=True)  # as Mistral-7B ships it
    tok.chat_template = ZEPHYR_TEMPLATE
    shutil.rmtree(raw)
    return tok


def llama3_tokenizer(out: Path):
    """Llama-3's tokenizer from its tiktoken ranks, with its 256 special tokens, BOS added, Instruct's template."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    path = _package_file("llama_models", "llama3", "tokenizer.model")
    from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer

    meta = MetaTokenizer(path)
    specials = [name for name, _ in sorted(meta.special_tokens.items(), key=lambda kv: kv[1])]
    backend = TikTokenConverter(vocab_file=str(path), pattern=meta.pat_str, extra_special_tokens=specials).converted()
    bos = "<|begin_of_text|>"
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                      special_tokens=[(bos, meta.special_tokens[bos])]),
    ])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token="<|eot_id|>",
                                  model_input_names=["input_ids", "attention_mask"])
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def _save_model(kind: str, tok, out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  bos_token_id=tok.bos_token_id, pad_token_id=None)
    if kind == "mistral":
        cfg = MistralConfig(**common, eos_token_id=MISTRAL_EOS, sliding_window=None, tie_word_embeddings=False)
        model = MistralForCausalLM(cfg)
        gen = GenerationConfig(bos_token_id=MISTRAL_BOS, eos_token_id=MISTRAL_EOS)
    else:
        cfg = LlamaConfig(**common, eos_token_id=[LLAMA3_EOS, LLAMA3_EOT], tie_word_embeddings=True)
        model = LlamaForCausalLM(cfg)
        gen = GenerationConfig(bos_token_id=LLAMA3_BOS, eos_token_id=[LLAMA3_EOS, LLAMA3_EOT])
    model.generation_config = gen
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    (out / "MICRO_MODEL.json").write_text(json.dumps({"kind": kind, "seed": seed}))
    return out


def build_micro_mistral(out: Path, seed: int = 0) -> Path:
    return _save_model("mistral", mistral_tokenizer(out), out, seed)


def build_micro_llama3(out: Path, seed: int = 0) -> Path:
    return _save_model("llama3", llama3_tokenizer(out), out, seed)


@pytest.fixture(scope="session")
def micro_mistral(tmp_path_factory) -> Path:
    return build_micro_mistral(tmp_path_factory.mktemp("micro-mistral"))


@pytest.fixture(scope="session")
def micro_llama3(tmp_path_factory) -> Path:
    return build_micro_llama3(tmp_path_factory.mktemp("micro-llama3"))
