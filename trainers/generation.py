"""Generation backends: chat conversations in, sampled responses out.

`hf` runs transformers' batched `generate` (left padding, chat template applied). The
`vllm` backend is an optional GPU extra and plugs in through the same `chat` method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from selm_bench.harness.core.progress import progress
from selm_bench.harness.core.registry import register_backend


@dataclass
class Sampling:
    n: int = 1
    temperature: float = 0.0  # below 1e-4 means greedy (FastChat's convention)
    top_p: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-4


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], model_name: str = "") -> str:
    """The text the model sees before its reply: its own chat template, else FastChat's."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    from fastchat.model.model_adapter import get_conversation_template

    conv = get_conversation_template(model_name or "vicuna")
    for m in messages:
        if m["role"] == "system":
            conv.set_system_message(m["content"])
        else:
            conv.append_message(conv.roles[0] if m["role"] == "user" else conv.roles[1], m["content"])
    conv.append_message(conv.roles[1], None)
    return conv.get_prompt()


def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer puts a BOS before plain text (Mistral's and Llama-3's do; the tiny world's has none)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """A rendered prompt's token ids with exactly one BOS where the model's own tokenizer puts one.

    A chat template that writes the BOS itself (Llama-3's) keeps it and gets no second one; one that
    does not (Zephyr's, on Mistral) gets the tokenizer's BOS in front, as FastChat and vLLM add it."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if adds_bos(tokenizer) and (not ids or ids[0] != tokenizer.bos_token_id):
        ids = [tokenizer.bos_token_id, *ids]
    return ids


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> list[int]:
    """One stop list for every backend: the tokenizer's eos plus the model's generation_config eos
    (Llama-3-Instruct's is [128001, 128009]), in that order, without repeats."""
    ids: list[int] = []
    cfg_eos = getattr(generation_config, "eos_token_id", None)
    for i in [tokenizer.eos_token_id, *(cfg_eos if isinstance(cfg_eos, (list, tuple)) else [cfg_eos])]:
        if i is not None and int(i) not in ids:
            ids.append(int(i))
    return ids


def load_generation_config(model: str, trust_remote_code: bool = False) -> Any:
    """The model's generation_config.json (None when it has none)."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(model, trust_remote_code=trust_remote_code)
    except OSError:
        return None


class SeededSampling:
    """Sampling with a random stream per reply, as a logits processor on greedy decoding (the
    Gumbel-max trick: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T)). Row r's
    noise comes from its own generator, seeded from (seed + the prompt's index in the call, sample k),
    so a reply never depends on the batch it lands in, on batch size or on the other prompts, as with
    vLLM's seed per request. top_p keeps the smallest set of tokens whose mass reaches it (nucleus)."""

    def __init__(self, seed: int, indices: list[int], n: int, temperature: float, top_p: float = 1.0):
        import torch

        self.generators = [torch.Generator().manual_seed(((seed + i) << 16) + k) for i in indices for k in range(n)]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            mass_before = sorted_logits.softmax(dim=-1).cumsum(dim=-1) - sorted_logits.softmax(dim=-1)
            drop = (mass_before >= self.top_p).scatter(-1, order, mass_before >= self.top_p)
            logits = logits.masked_fill(drop, float("-inf"))
        tiny = torch.finfo(torch.float32).tiny
        uniform = torch.stack([torch.rand(logits.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=tiny)))
        return logits + gumbel.to(logits.device)


@register_backend("hf", help="transformers generate(), batched with left padding (CPU or GPU)")
class HFBackend:
    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64, dtype: str = "auto",
                 trust_remote_code: bool = False, **_: Any):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = str(model)
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype,
                                                          trust_remote_code=trust_remote_code).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.stop_ids = stop_token_ids(self.tokenizer, self.model.generation_config)

    def chat(self, conversations: list[list[dict[str, str]]], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        """For each conversation, `sampling.n` replies to its last user turn."""
        prompts = [render_prompt(self.tokenizer, conv, self.model_name) for conv in conversations]
        return self.complete(prompts, sampling, desc=desc)

    def complete(self, prompts: list[str], sampling: Sampling, desc: str = "generate") -> list[list[str]]:
        import torch

        with torch.no_grad():
            return self._complete(prompts, sampling, desc)

    def _complete(self, prompts: list[str], sampling: Sampling, desc: str) -> list[list[str]]:
        from transformers import LogitsProcessorList

        outputs: list[list[str]] = []
        # Longest prompts first keeps padding low within a batch.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        by_index: dict[int, list[str]] = {}
        step = max(1, self.batch_size // max(1, sampling.n))
        with progress(desc, total=len(prompts)) as bar:
            for start in range(0, len(order), step):
                idx = order[start : start + step]
                rows = [ids for i in idx for ids in [encode_prompt(self.tokenizer, prompts[i])] * sampling.n]
                enc = self.tokenizer.pad({"input_ids": rows}, return_tensors="pt").to(self.device)
                gen_kwargs: dict[str, Any] = dict(
                    max_new_tokens=sampling.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                    eos_token_id=self.stop_ids,
                )
                gen_kwargs.update(do_sample=False)  # sampling: greedy over SeededSampling's perturbed logits
                if not sampling.greedy:
                    gen_kwargs.update(logits_processor=LogitsProcessorList([SeededSampling(
                        sampling.seed, idx, sampling.n, sampling.temperature, sampling.top_p)]))
                out = self.model.generate(**enc, **gen_kwargs)
                new_tokens = out[:, enc["input_ids"].shape[1] :]
                texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                for j, i in enumerate(idx):
                    by_index[i] = [t.strip() for t in texts[j * sampling.n : (j + 1) * sampling.n]]
                bar.advance(len(idx))
        outputs = [by_index[i] for i in range(len(prompts))]
        return outputs
