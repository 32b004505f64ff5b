import pytest
import torch

from selm_bench.trainers.losses import selm_loss


def _rows():
    u = lambda s: [{"role": "user", "content": s}]  # noqa: E731
    a = lambda s: [{"role": "assistant", "content": s}]  # noqa: E731
    return [
        {"prompt": u("What is 37 + 5 ?"), "chosen": a("42"), "rejected": a("32"), "ref_response": a("41")},
        {"prompt": u("Reverse : a b c"), "chosen": a("c b a"), "rejected": a("a b c"), "ref_response": a("c a b")},
        {"prompt": u("Word 2 of : the red fox"), "chosen": a("red"), "rejected": a("fox"), "ref_response": a("the")},
    ]


def _trainers(tiny_model, tmp_path, alpha, nll=0.0, precompute=False, rows=None):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from selm_bench.trainers.selm_trainer import SELMConfig, SELMTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    common = dict(output_dir=str(tmp_path), per_device_train_batch_size=3, bf16=False, use_cpu=True, report_to=[],
                  beta=0.1, max_length=64, learning_rate=1e-3, max_steps=1, save_strategy="no",
                  precompute_ref_log_probs=precompute)
    load = lambda: AutoModelForCausalLM.from_pretrained(tiny_model)  # noqa: E731
    rows = rows or _rows()
    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, nll]} if nll else {}
    dpo = DPOTrainer(model=load(), ref_model=load(), args=DPOConfig(**common, **losses), processing_class=tok,
                     train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]))
    selm = SELMTrainer(model=load(), ref_model=load(), args=SELMConfig(**common, alpha=alpha, nll_weight=nll), processing_class=tok,
                       train_dataset=Dataset.from_list(rows))
    return dpo, selm


def _batch(trainer):
    """The collated batch of all examples, in dataset order (the dataloader would shuffle)."""
    return trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])


def test_selm_batch_carries_three_sequences(tiny_model, tmp_path):
    _, selm = _trainers(tiny_model, tmp_path, alpha=0.5)
    batch = _batch(selm)
    assert batch["input_ids"].shape[0] == 9  # chosen, rejected, y_ref for 3 examples
    # y_ref rows: prompt masked out, response (plus <|end|>) scored
    assert batch["completion_mask"][6:].sum(dim=1).tolist() == [
        len(x) for x in selm.train_dataset["ref_response_ids"]]


@pytest.mark.parametrize("nll", [0.0, 0.5])
def test_alpha_zero_matches_trl_dpo_loss(tiny_model, tmp_path, nll):
    dpo, selm0 = _trainers(tiny_model, tmp_path, alpha=0.0, nll=nll)
    # Same weights in both (loaded from the same checkpoint), same examples in the same order.
    dpo.model.eval(), selm0.model.eval()
    b_dpo, b_selm = _batch(dpo), _batch(selm0)
    assert torch.equal(b_dpo["input_ids"], b_selm["input_ids"][:6, : b_dpo["input_ids"].shape[1]])
    with torch.no_grad():
        l_dpo = dpo.compute_loss(dpo.model, b_dpo)
        l_selm = selm0.compute_loss(selm0.model, b_selm)
    assert l_selm.item() == pytest.approx(l_dpo.item(), rel=1e-5)


def test_selm_trainer_loss_matches_the_formula_on_direct_logps(tiny_model, tmp_path):
    """The trainer's loss equals the SELM formula on log-probs computed here, one unpadded sequence
    at a time (not the trainer's own batched log-probs)."""
    _, selm = _trainers(tiny_model, tmp_path, alpha=0.7)
    selm.model.eval()
    ds = selm.train_dataset
    with torch.no_grad():
        got = selm.compute_loss(selm.model, _batch(selm))
        pol = {k: torch.stack([_direct_logp(selm.model, ex["prompt_ids"], ex[k]) for ex in ds])
               for k in ("chosen_ids", "rejected_ids", "ref_response_ids")}
        ref = {k: torch.stack([_direct_logp(selm.ref_model, ex["prompt_ids"], ex[k]) for ex in ds]) for k in pol}
    beta, alpha = 0.1, 0.7
    # Zhang et al. 2024: DPO's sigmoid loss plus alpha * beta * (log pi(y_ref) - log pi_ref(y_ref))
    margin = beta * ((pol["chosen_ids"] - ref["chosen_ids"]) - (pol["rejected_ids"] - ref["rejected_ids"]))
    want = -torch.nn.functional.logsigmoid(margin) + alpha * beta * (pol["ref_response_ids"] - ref["ref_response_ids"])
    assert got.item() == pytest.approx(want.mean().item(), rel=1e-5)


def test_selm_training_step_lowers_ref_response_logp(tiny_model, tmp_path):
    _, selm = _trainers(tiny_model, tmp_path, alpha=50.0)  # optimism dominates
    batch = _batch(selm)
    selm.model.eval()
    with torch.no_grad():
        before = selm._sequence_logps(selm.model, batch, grad=False).chunk(3)[2]
    selm.train()
    selm.model.eval()
    with torch.no_grad():
        after = selm._sequence_logps(selm.model, batch, grad=False).chunk(3)[2]
    assert after.mean() < before.mean()
    logged = set(selm._metrics["train"]) | {k for entry in selm.state.log_history for k in entry}
    assert {f"rewards/{k}" for k in ("chosen", "rejected", "accuracies", "margins", "ref_response")} <= logged
    assert {f"logps/{k}" for k in ("chosen", "rejected", "ref_response")} <= logged  # what the report's curves read


def _direct_logp(model, prompt_ids, response_ids):
    """Sum of the response tokens' log-probs, one unpadded sequence at a time (no collator)."""
    ids = torch.tensor([prompt_ids + response_ids])
    logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    return logps[torch.arange(len(targets)), targets][len(prompt_ids) - 1 :].sum()


def test_ref_response_equal_to_chosen_or_rejected_reuses_rows_with_identical_loss_and_grads(tiny_model, tmp_path):
    from datasets import Dataset

    _, selm = _trainers(tiny_model, tmp_path, alpha=0.7, nll=0.5)
    rows = _rows()
    rows[0]["ref_response"] = rows[0]["chosen"]  # y_ref == chosen
    rows[1]["ref_response"] = rows[1]["rejected"]  # y_ref == rejected
    selm.train_dataset = selm._prepare_dataset(Dataset.from_list(rows), selm.processing_class, selm.args, "train")
    batch = _batch(selm)
    assert batch["ref_source"].tolist() == [0, 1, 2] and batch["input_ids"].shape[0] == 7

    model, ref = selm.model, selm.ref_model
    model.eval()
    got = selm.compute_loss(model, batch)
    got.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    ds = selm.train_dataset
    pol = {k: torch.stack([_direct_logp(model, ex["prompt_ids"], ex[k]) for ex in ds])
           for k in ("chosen_ids", "rejected_ids", "ref_response_ids")}
    with torch.no_grad():
        r = {k: torch.stack([_direct_logp(ref, ex["prompt_ids"], ex[k]) for ex in ds]) for k in pol}
    want = selm_loss(pol["chosen_ids"], pol["rejected_ids"], r["chosen_ids"], r["rejected_ids"],
                     pol["ref_response_ids"], r["ref_response_ids"], beta=0.1, alpha=0.7).mean()
    n_tokens = sum(len(ex["chosen_ids"]) for ex in ds)
    want = want + 0.5 * -pol["chosen_ids"].sum() / n_tokens
    want.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("nll", [0.0, 0.5])
def test_precomputed_reference_gives_the_same_loss_and_grads(tiny_model, tmp_path, nll):
    """Precomputed reference log-probs (one pass before training) = the live reference forward, for DPO
    and SELM; the precomputed columns equal the reference's log-probs computed one unpadded sequence at a time."""
    rows = _rows() + [dict(_rows()[0], ref_response=_rows()[0]["chosen"])]  # one y_ref reused from chosen
    live = _trainers(tiny_model, tmp_path / "a", alpha=0.7, nll=nll, rows=rows)
    pre = _trainers(tiny_model, tmp_path / "b", alpha=0.7, nll=nll, precompute=True, rows=rows)
    ds = pre[1].train_dataset
    for col, ids in (("ref_chosen_logps", "chosen_ids"), ("ref_rejected_logps", "rejected_ids"),
                     ("ref_ref_logps", "ref_response_ids")):
        with torch.no_grad():
            want = [_direct_logp(pre[1].ref_model, ex["prompt_ids"], ex[ids]).item() for ex in ds]
        assert ds[col] == pytest.approx(want, rel=1e-5, abs=1e-5)
    for t_live, t_pre in zip(live, pre):
        assert t_pre.precompute_ref_logps and not t_live.precompute_ref_logps
        got = []
        for t in (t_live, t_pre):
            t.model.eval()
            loss = t.compute_loss(t.model, _batch(t))
            loss.backward()
            got.append((loss.item(), [p.grad.clone() for p in t.model.parameters()]))
        assert got[1][0] == pytest.approx(got[0][0], rel=1e-6)
        for g_live, g_pre in zip(got[0][1], got[1][1]):
            assert torch.allclose(g_pre, g_live, atol=1e-7, rtol=1e-5)
