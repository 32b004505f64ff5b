"""PairRM (llm-blender/PairRM-hf) as a ranker, in-project: transformers' DeBERTa-v2 plus PairRM's head.

A reimplementation of llm-blender 0.0.2's PairRM-hf path, which it does not import:
`DebertaV2PairRM` (llm_blender/pair_ranker/pairrm.py), its input `tokenize_pair`
(llm_blender/blender/blender_utils.py), and the scores of `Blender.rank(..., return_scores=True)`
(`get_scores_from_cmps`, policy "max_logits", on the full comparison matrix).

- One comparison (x, a, b): `encode("<|source|>" + x)` cut at `source_max_length` tokens, then
  `encode("<|candidate1|>" + a)` and `encode("<|candidate2|>" + b)`, each cut at
  `(source_max_length + 2 * candidate_max_length - len(source ids)) // 2`; every `encode` adds
  [CLS] ... [SEP]. Defaults 1224 and 412, PairRM's (2048 tokens in all).
- Its logit: `head([h_src; h_a]) - head([h_src; h_b])`, h = the encoder's last hidden state at the
  prefix token, head = Linear(2h, h) - Tanh - Linear(h, 1) (dropout off); > 0: a is better.
- A prompt's n candidates: M[i][j] = logit(x, c_i, c_j) for every i != j (n(n-1) forward rows), 0 on
  the diagonal; score_i = mean_j (M[i][j] - M[j][i]). Higher is better; llm-blender's rank 1 (the
  SELM authors' chosen) is the highest score.

`pairrm` loads llm-blender/PairRM-hf; `pairrm:<hub id or folder>` another model in its layout
(config.json, model.safetensors or pytorch_model.bin with keys `pretrained_model.*` and
`head_layer.{1,4}.*`, tokenizer files with the prefix tokens). `batch_size` counts comparison rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selm_bench.harness.core.registry import register_ranker

DEFAULT_MODEL = "llm-blender/PairRM-hf"
PREFIXES = ("<|source|>", "<|candidate1|>", "<|candidate2|>")


def _folder(model: str) -> Path:
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "pytorch_model*.bin", "*.model"]))


def _state_dict(folder: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    if (folder / "model.safetensors").exists():
        return load_file(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").exists():
        shards = sorted(set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


@register_ranker("pairrm", help="pairrm[:<hub id or path>]: PairRM (default llm-blender/PairRM-hf), pairwise, in-project")
class PairRMRanker:
    """PairRM's scores from the full comparison matrix, as llm-blender computes them (module docstring)."""

    def __init__(self, name: str = "pairrm", device: str = "cpu", batch_size: int = 16, trust_remote_code: bool = False,
                 source_max_length: int = 1224, candidate_max_length: int = 412, dtype: str = "float32", **_: Any):
        import torch
        from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

        folder = _folder(name.split(":", 1)[1] if ":" in name else DEFAULT_MODEL)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        config = DebertaV2Config.from_pretrained(folder)
        self.prefix_ids = [self.tokenizer.convert_tokens_to_ids(p) for p in PREFIXES]
        declared = [getattr(config, k, None) for k in ("source_prefix_id", "cand1_prefix_id", "cand2_prefix_id")]
        if self.tokenizer.unk_token_id in self.prefix_ids or any(d not in (None, i) for d, i in zip(declared, self.prefix_ids)):
            raise ValueError(f"pairrm: {folder}: tokenizer ids of {PREFIXES} are {self.prefix_ids}, config says {declared}")
        h = config.hidden_size
        # PairRM-hf's head_layer; the dropouts (off in eval) keep its key numbers 1 and 4
        head = torch.nn.Sequential(torch.nn.Dropout(), torch.nn.Linear(2 * h, h), torch.nn.Tanh(), torch.nn.Dropout(),
                                   torch.nn.Linear(h, getattr(config, "n_tasks", 1)))
        self.model = torch.nn.ModuleDict({"pretrained_model": DebertaV2Model(config), "head_layer": head})
        missing, unexpected = self.model.load_state_dict(_state_dict(folder), strict=False)
        unexpected = [k for k in unexpected if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(f"pairrm: {folder}: not PairRM-hf's weights (missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.model.to(device=device, dtype=getattr(torch, dtype)).eval()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.device, self.batch_size, self._torch = device, batch_size, torch
        self.source_max_length, self.candidate_max_length = source_max_length, candidate_max_length

    def _pieces(self, source: str, candidates: list[str]) -> tuple[list[int], list[list[int]], list[list[int]]]:
        """The source's ids, and each candidate's ids as first (candidate1) and as second (candidate2)."""
        enc = self.tokenizer.encode
        src = enc(PREFIXES[0] + source, max_length=self.source_max_length, truncation=True)
        cap = (self.source_max_length + 2 * self.candidate_max_length - len(src)) // 2
        return (src, [enc(PREFIXES[1] + c, max_length=cap, truncation=True) for c in candidates],
                [enc(PREFIXES[2] + c, max_length=cap, truncation=True) for c in candidates])

    def _logits(self, rows: list[tuple[list[int], list[int], list[int]]]) -> list[float]:
        """logit(a, b) of each (source ids, first ids, second ids), `batch_size` rows a forward pass."""
        torch, out = self._torch, [0.0] * len(rows)
        order = sorted(range(len(rows)), key=lambda r: -sum(len(p) for p in rows[r]))  # less padding
        src_id, first_id, second_id = self.prefix_ids
        for start in range(0, len(order), self.batch_size):
            chunk = [rows[r] for r in order[start : start + self.batch_size]]
            seqs = [s + a + b for s, a, b in chunk]
            width = max(len(q) for q in seqs)
            ids = torch.tensor([q + [self.pad_id] * (width - len(q)) for q in seqs], device=self.device)
            mask = torch.tensor([[1] * len(q) + [0] * (width - len(q)) for q in seqs], device=self.device)
            where = torch.tensor([(s.index(src_id), len(s) + a.index(first_id), len(s + a) + b.index(second_id))
                                  for s, a, b in chunk], device=self.device)
            with torch.no_grad():
                hidden = self.model["pretrained_model"](input_ids=ids, attention_mask=mask).last_hidden_state
                h = hidden[torch.arange(len(chunk), device=self.device)[:, None], where]  # (rows, 3, hidden)
                head = self.model["head_layer"]
                diff = head(torch.cat([h[:, 0], h[:, 1]], -1)) - head(torch.cat([h[:, 0], h[:, 2]], -1))
            for r, v in zip(order[start : start + self.batch_size], diff.float().mean(-1).tolist()):
                out[r] = v
        return out

    def compare(self, sources: list[str], firsts: list[str], seconds: list[str]) -> list[float]:
        """PairRM's logit that `firsts[k]` beats `seconds[k]` for `sources[k]` (> 0: the first is better)."""
        rows = []
        for x, a, b in zip(sources, firsts, seconds, strict=True):
            src, as_first, as_second = self._pieces(x, [a, b])
            rows.append((src, as_first[0], as_second[1]))
        return self._logits(rows)

    def matrices(self, sources: list[str], candidates: list[list[str]]) -> list[list[list[float]]]:
        """Each prompt's n x n comparison matrix: [i][j] = logit(c_i beats c_j), 0 on the diagonal."""
        rows, where = [], []
        for p, (x, cands) in enumerate(zip(sources, candidates, strict=True)):
            src, firsts, seconds = self._pieces(x, cands)
            for i in range(len(cands)):
                for j in range(len(cands)):
                    if i != j:
                        rows.append((src, firsts[i], seconds[j]))
                        where.append((p, i, j))
        out = [[[0.0] * len(c) for _ in c] for c in candidates]
        for (p, i, j), v in zip(where, self._logits(rows)):
            out[p][i][j] = v
        return out

    def score(self, prompts: list[dict[str, Any]], candidates: list[list[str]]) -> list[list[float] | None]:
        """score_i = mean_j (M[i][j] - M[j][i]) per prompt: llm-blender's `Blender.rank(return_scores=True)`."""
        mats = self.matrices([p["prompt"] for p in prompts], candidates)
        return [[sum(m[i][j] - m[j][i] for j in range(len(m))) / len(m) for i in range(len(m))] for m in mats]
