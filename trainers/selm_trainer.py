"""SELM = TRL's DPOTrainer plus a third sequence, y_ref, and the optimism term.

The collator appends y_ref to the [chosen, rejected] batch so policy and reference each
score all three sequences in one forward pass; `_compute_loss` feeds the sums of response
log-probs to the pure `selm_loss`. y_ref is one of the ranked candidates, so it is often the
chosen or the rejected response itself (51-59% of pairs in the tiny default): such rows are
not appended again, their log-probs are reused (same values, same gradients).

With `precompute_ref_log_probs` (TRL's switch) the frozen reference scores every example's
chosen, rejected and y_ref once before training (`ref_chosen_logps`, `ref_rejected_logps`,
`ref_ref_logps` columns), and a training step runs the policy only: the same loss, one
forward pass fewer per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from selm_bench.trainers.losses import selm_loss


TRUNCATION_RULES = ("authors", "cut-prompt")


@dataclass
class PromptCutDPOConfig(DPOConfig):
    max_prompt_length: int | None = field(default=None, metadata={
        "help": "The prompt's token budget: a cut prompt keeps its last N tokens (cut from the left, BOS kept)."})
    truncation: str = field(default="authors", metadata={
        "help": "authors: as the SELM authors' TRL 0.8, only a prompt + longest response over max_length is cut "
                "(prompt to max_prompt_length, then each response to max_length - max_prompt_length); "
                "cut-prompt: every prompt is cut to max_prompt_length, the sequence then to max_length."})

    def __post_init__(self):
        super().__post_init__()
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1, got {self.max_prompt_length}")
        if self.truncation not in TRUNCATION_RULES:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATION_RULES)}, got {self.truncation!r}")


@dataclass
class SELMConfig(PromptCutDPOConfig):
    alpha: float = field(default=0.001, metadata={"help": "Weight of the optimism term (0 = DPO)."})
    nll_weight: float = field(default=0.0, metadata={"help": "Weight of the chosen-response NLL (TRL's 'sft' loss term)."})


RESPONSES = ("chosen_ids", "rejected_ids", "ref_response_ids")


def cut_left(ids: list[int], keep: int, bos: int | None) -> list[int]:
    """The last `keep` tokens; a leading BOS stays the first of them."""
    if len(ids) <= keep:
        return ids
    if bos is not None and ids and ids[0] == bos:
        return [bos, *ids[len(ids) - keep + 1:]] if keep > 1 else [bos]
    return ids[len(ids) - keep:]


def fit_row(ex: dict[str, Any], max_length: int | None, max_prompt_length: int | None, rule: str,
            bos: int | None) -> dict[str, Any]:
    """One tokenized row made to fit `max_length` by `rule`, with `bos` (the tokenizer's, when it adds
    one) first in the prompt exactly once. Adds `fit`: "kept", "prompt-cut", "responses-cut" or
    "dropped" (the prompt alone fills max_length: nothing would be left to learn from)."""
    prompt = list(ex["prompt_ids"])
    if bos is not None and prompt[:1] != [bos]:
        prompt = [bos, *prompt]
    responses = {k: list(ex[k]) for k in RESPONSES if k in ex}
    status = "kept"
    if rule == "cut-prompt":
        if max_prompt_length is not None and len(prompt) > max_prompt_length:
            prompt, status = cut_left(prompt, max_prompt_length, bos), "prompt-cut"
    elif max_length is not None:
        longest = max(len(r) for r in responses.values())
        budget = max_prompt_length if max_prompt_length is not None else len(prompt)
        if len(prompt) + longest > max_length and len(prompt) > budget:
            prompt, status = cut_left(prompt, budget, bos), "prompt-cut"
        if len(prompt) + longest > max_length:  # as TRL 0.8: the original longest response decides
            keep = max_length - budget if max_prompt_length is not None else max_length - len(prompt)
            responses = {k: r[:max(keep, 0)] for k, r in responses.items()}
            status = "responses-cut"
    if max_length is not None and len(prompt) >= max_length:
        status = "dropped"
    return {"prompt_ids": prompt, **responses, "fit": status}


def fit_dataset(dataset, tokenizer, args, name: str) -> tuple[Any, dict[str, int]]:
    """Every row through `fit_row`; dropped rows removed. Returns the dataset and the counts by status."""
    from selm_bench.trainers.generation import adds_bos

    bos = tokenizer.bos_token_id if adds_bos(tokenizer) else None
    rule = getattr(args, "truncation", "cut-prompt")
    fitted = dataset.map(fit_row, fn_kwargs=dict(max_length=args.max_length, bos=bos, rule=rule,
                                                 max_prompt_length=getattr(args, "max_prompt_length", None)),
                         desc=f"Fitting {name} rows to max_length ({rule})")
    counts = {s: 0 for s in ("kept", "prompt-cut", "responses-cut", "dropped")}
    for status in fitted["fit"]:
        counts[status] += 1
    if counts["dropped"]:
        fitted = fitted.filter(lambda ex: ex["fit"] != "dropped", desc=f"Dropping {name} rows whose prompt fills max_length")
    return fitted.remove_columns("fit"), {"rows": len(dataset), "trained": len(dataset) - counts["dropped"], **counts}


class PreparedRows:
    """DPOTrainer's tokenization, then this project's fit (`fit_dataset`) instead of TRL's silent drop:
    TRL's filter sees max_length None, so every dropped row is counted in `self.row_counts`."""

    row_counts: dict[str, dict[str, int]]

    def _tokenized(self, dataset, processing_class, args, dataset_name):
        limit, args.max_length = args.max_length, None
        try:
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        finally:
            args.max_length = limit

    def _fitted(self, dataset, processing_class, args, dataset_name):
        fitted, counts = fit_dataset(dataset, processing_class, args, dataset_name)
        if not hasattr(self, "row_counts"):
            self.row_counts = {}
        self.row_counts[dataset_name] = counts
        return fitted


class PromptCutDPOTrainer(PreparedRows, DPOTrainer):
    """TRL's DPOTrainer with this project's BOS and truncation rule (`PromptCutDPOConfig.truncation`)."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        tokenized = self._tokenized(dataset, processing_class, args, dataset_name)
        return self._fitted(tokenized, processing_class, args, dataset_name)


@dataclass
class DataCollatorForSELM(DataCollatorForPreference):
    """Batches [prompt+chosen; prompt+rejected; prompt+y_ref for rows whose y_ref is neither],
    right-padded, with completion masks, and `ref_source` (B,): 0 = y_ref is the chosen
    response, 1 = the rejected one, 2 = its own row in the third block."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        if "ref_ref_logps" in examples[0]:
            out["ref_ref_logps"] = torch.tensor([ex["ref_ref_logps"] for ex in examples])
        source = [0 if ex["ref_response_ids"] == ex["chosen_ids"] else 1 if ex["ref_response_ids"] == ex["rejected_ids"]
                  else 2 for ex in examples]
        out["ref_source"] = torch.tensor(source, dtype=torch.long)
        extra = [ex for ex, src in zip(examples, source) if src == 2]
        if not extra:
            return out
        refs = [ex["prompt_ids"] + ex["ref_response_ids"] for ex in extra]
        ref_masks = [[0] * len(ex["prompt_ids"]) + [1] * len(ex["ref_response_ids"]) for ex in extra]
        if self.max_length is not None:  # the same truncation as chosen/rejected get
            sl = slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
            refs, ref_masks = [r[sl] for r in refs], [m[sl] for m in ref_masks]
        width = max(out["input_ids"].shape[1], max(len(r) for r in refs))

        def pad_to(t: torch.Tensor, value: int) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

        def rows(seqs: list[list[int]], value: int) -> torch.Tensor:
            return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)

        out["input_ids"] = torch.cat([pad_to(out["input_ids"], self.pad_token_id), rows(refs, self.pad_token_id)])
        out["attention_mask"] = torch.cat([pad_to(out["attention_mask"], 0), rows([[1] * len(r) for r in refs], 0)])
        out["completion_mask"] = torch.cat([pad_to(out["completion_mask"], 0), rows(ref_masks, 0)])
        return out


def split_logps(logps: torch.Tensor, ref_source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen, rejected, y_ref) sequence log-probs from the rows [chosen; rejected; extra y_ref]."""
    b = ref_source.shape[0]
    ar = torch.arange(b, device=ref_source.device)
    extra_rank = torch.cumsum((ref_source == 2).long(), 0) - 1
    index = torch.where(ref_source == 0, ar, torch.where(ref_source == 1, b + ar, 2 * b + extra_rank))
    return logps[:b], logps[b : 2 * b], logps[index]


def _selm_collator(base: Any) -> DataCollatorForSELM:
    if isinstance(base, DataCollatorForSELM):
        return base
    return DataCollatorForSELM(pad_token_id=base.pad_token_id, max_length=base.max_length,
                               truncation_mode=base.truncation_mode)


class SELMTrainer(PreparedRows, DPOTrainer):
    """DPOTrainer whose dataset carries `ref_response` (y_ref) beside chosen and rejected."""

    def __init__(self, *args: Any, **kwargs: Any):
        # checked before DPOTrainer's own set-up, which already runs this class's dataset hooks
        config = kwargs["args"] if "args" in kwargs else (args[2] if len(args) > 2 else None)  # (model, ref_model, args)
        if not isinstance(config, SELMConfig):
            raise TypeError("SELMTrainer needs args=SELMConfig(...)")
        super().__init__(*args, **kwargs)
        if self.args.padding_free:
            raise ValueError("SELMTrainer scores y_ref in the live forward pass: padding_free is unsupported")
        unsupported = {"loss_type": (["sigmoid"], ("sigmoid",)), "label_smoothing": (0.0,), "ld_alpha": (None,),
                       "use_weighting": (False,), "f_divergence_type": ("reverse_kl",), "pad_to_multiple_of": (None,)}
        for name, allowed in unsupported.items():
            value = getattr(self.args, name, allowed[0])
            if value not in allowed:
                raise ValueError(f"SELMTrainer implements the sigmoid SELM loss only: {name}={value!r} is unsupported")
        self.alpha = self.args.alpha
        self.data_collator = _selm_collator(self.data_collator)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        prepared = self._tokenized(dataset, processing_class, args, dataset_name)
        if "ref_response_ids" in prepared.column_names:
            return self._fitted(prepared, processing_class, args, dataset_name)
        tok = processing_class

        def add_ref(example):
            prompt_text = tok.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(example["prompt"] + example["ref_response"], tokenize=False)
            p_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
            f_ids = tok(full, add_special_tokens=False)["input_ids"]
            if f_ids[: len(p_ids)] != p_ids:
                raise ValueError("tokenized prompt is not a prefix of prompt + y_ref; check the chat template")
            return {"ref_response_ids": f_ids[len(example["prompt_ids"]) :]}

        # y_ref's ids are cut off the full prompt first, then every row is fitted (BOS, truncation)
        with_ref = prepared.map(add_ref, desc=f"Tokenizing y_ref for {dataset_name}")
        return self._fitted(with_ref, processing_class, args, dataset_name)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        missing = [c for c in ("ref_response_ids", "ref_ref_logps") if c not in self._signature_columns]
        self._signature_columns = list(self._signature_columns) + missing

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        """The frozen reference's log-probs of each example's chosen, rejected and y_ref, added as columns
        (called by DPOTrainer.__init__ when `precompute_ref_log_probs` is set); same rows and reuse as a step."""
        from torch.utils.data import DataLoader

        loader = self.accelerator.prepare(DataLoader(
            dataset, batch_size=batch_size, collate_fn=_selm_collator(self.data_collator), shuffle=False,
            num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory))
        model = self.ref_model if self.ref_model is not None else self.model
        cols: list[list[torch.Tensor]] = [[], [], []]
        with self.accelerator.autocast():
            for batch in loader:
                parts = split_logps(self._sequence_logps(model, batch, grad=False), batch["ref_source"])
                for col, part in zip(cols, self.accelerator.gather_for_metrics(parts)):
                    col.append(part.float().cpu())
        for col_name, col in zip(("ref_chosen_logps", "ref_rejected_logps", "ref_ref_logps"), cols):
            dataset = dataset.add_column(col_name, torch.cat(col).tolist())
        return dataset

    def _token_logps(self, model, inputs, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log-probs of the completion tokens (zero elsewhere) and their mask."""
        mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(mask == 0, -100)
        kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "use_cache": False}
        with torch.set_grad_enabled(grad):
            out = model(**kwargs, labels=labels, fused_lm_head=True)
        shift_mask = mask[:, 1:]
        return out.log_probs[:, -shift_mask.shape[1] :], shift_mask

    def _sequence_logps(self, model, inputs, grad: bool) -> torch.Tensor:
        return self._token_logps(model, inputs, grad)[0].sum(dim=1)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        tok_logps, tok_mask = self._token_logps(model, inputs, grad=True)
        src = inputs["ref_source"]
        pc, pr, py = split_logps(tok_logps.sum(dim=1), src)
        if self.precompute_ref_logps:
            rc, rr, ry = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"], inputs["ref_ref_logps"]
        else:
            with torch.no_grad():
                rc, rr, ry = split_logps(self._sequence_logps(self.ref_model, inputs, grad=False), src)
        losses = selm_loss(pc, pr, rc, rr, py, ry, beta=self.beta, alpha=self.alpha)
        loss = losses.mean()
        if self.args.nll_weight:
            # Same term as TRL's loss_type "sft": mean NLL over the chosen responses' tokens.
            chosen_tok, chosen_mask = tok_logps[: len(src)], tok_mask[: len(src)]
            loss = loss + self.args.nll_weight * -chosen_tok[chosen_mask.bool()].mean()

        gather = self.accelerator.gather_for_metrics
        chosen_r, rejected_r = self.beta * (pc - rc).detach(), self.beta * (pr - rr).detach()
        m = self._metrics[mode]
        m["rewards/chosen"].append(gather(chosen_r).mean().item())
        m["rewards/rejected"].append(gather(rejected_r).mean().item())
        m["rewards/accuracies"].append(gather((chosen_r > rejected_r).float()).mean().item())
        m["rewards/margins"].append(gather(chosen_r - rejected_r).mean().item())
        m["rewards/ref_response"].append(gather(self.beta * (py - ry).detach()).mean().item())
        m["logps/chosen"].append(gather(pc.detach()).mean().item())
        m["logps/rejected"].append(gather(pr.detach()).mean().item())
        m["logps/ref_response"].append(gather(py.detach()).mean().item())
        if return_outputs:
            raise NotImplementedError("SELMTrainer does not return logits")
        return loss
