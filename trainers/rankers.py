"""Rankers score each prompt's candidate responses; the online loop keeps best vs worst.

One interface: `Ranker(name=..., device=..., batch_size=...)` then
`score(prompts, candidates) -> list[list[float] | None]` (None: the ranker failed on that
prompt; the rank stage counts it, see trainers/online.py).

- `oracle`: the tiny world's graded verifier (needs gold answers).
- `reward-model:<hub id or path>`: a sequence-classification model's scalar reward for
  [user prompt, assistant candidate] with the reward model's own chat template, batched.
- `pairrm`: PairRM (llm-blender/PairRM) through the `llm-blender` package (extra `.[pairrm]`).
"""

from __future__ import annotations

from typing import Any

from harness.registry import register_ranker


def _parameter(name: str, kind: str) -> str:
    arg = name.split(":", 1)[1] if ":" in name else ""
    if not arg:
        raise ValueError(f"ranker {kind} needs a model: {kind}:<hub id or local path>")
    return arg


@register_ranker("oracle", help="the tiny world's graded verifier (needs gold answers)")
class OracleRanker:
    def __init__(self, **_: Any):
        pass

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float]]:
        from harness.tinyworld import verify

        return [[verify(p["category"], p["answer"], c) for c in cands] for p, cands in zip(prompts, candidates)]


@register_ranker("reward-model", help="reward-model:<hub id or path>: a sequence-classification scalar reward")
class RewardModelRanker:
    def __init__(self, name: str = "", device: str = "cpu", batch_size: int = 16, **_: Any):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = _parameter(name, "reward-model")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if self.model.config.num_labels != 1:
            raise ValueError(f"reward-model:{path}: expected one output (a scalar reward), has {self.model.config.num_labels}")
        self.device, self.batch_size, self._torch = device, batch_size, torch

    def texts(self, prompt: str, candidate: str) -> str:
        conv = [{"role": "user", "content": prompt}, {"role": "assistant", "content": candidate}]
        return self.tokenizer.apply_chat_template(conv, tokenize=False)

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float]]:
        flat = [self.texts(p["prompt"], c) for p, cands in zip(prompts, candidates) for c in cands]
        rewards: list[float] = []
        with self._torch.no_grad():
            for i in range(0, len(flat), self.batch_size):
                enc = self.tokenizer(flat[i : i + self.batch_size], return_tensors="pt", padding=True,
                                     add_special_tokens=False).to(self.device)
                rewards += self.model(**enc).logits[:, 0].float().tolist()
        out, at = [], 0
        for cands in candidates:
            out.append(rewards[at : at + len(cands)])
            at += len(cands)
        return out


@register_ranker("pairrm", help="PairRM (llm-blender/PairRM), pairwise; optional extra .[pairrm]")
class PairRMRanker:
    """PairRM's own ranking through llm-blender: each candidate's rank among the prompt's candidates
    (rank 1 = best) becomes the score -rank. llm-blender 0.0.2 does not import with transformers 5
    (it reads TRANSFORMERS_CACHE from transformers.utils.hub); this adapter is ready for a stack
    where it does."""

    def __init__(self, name: str = "pairrm", device: str = "cpu", batch_size: int = 16, **_: Any):
        try:
            import llm_blender
        except Exception as e:  # noqa: BLE001 - any import failure is the same message
            raise RuntimeError(f"ranker pairrm needs llm-blender (pip install 'selm-bench[pairrm]'), which does not "
                               f"import here: {type(e).__name__}: {e}") from None
        self.blender = llm_blender.Blender()
        self.blender.loadranker(name.split(":", 1)[1] if ":" in name else "llm-blender/PairRM", device=device)
        self.batch_size = batch_size

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float]]:
        ranks = self.blender.rank([p["prompt"] for p in prompts], candidates, return_scores=False,
                                  batch_size=self.batch_size)
        return [[-float(r) for r in row] for row in ranks]
