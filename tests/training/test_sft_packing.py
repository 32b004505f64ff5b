"""SFT's packed batches (several sequences per row, CPU default) give the padded batch's loss and gradients."""

import pytest
import torch

from selm_bench.trainers.train import pack_rows, packed_collator


def test_pack_rows_first_fit_decreasing():
    # lengths 5, 3, 4, 2 into rows of 8: 5 opens row A, 4 opens row B, 3 joins A (8), 2 joins B (6)
    assert pack_rows([5, 3, 4, 2], 8) == [[0, 1], [2, 3]]
    # a sequence longer than the capacity widens the rows to it
    assert pack_rows([10, 3, 6], 4) == [[0], [1, 2]]
    assert pack_rows([9, 1], 4) == [[0], [1]]  # the longest (9) sets the row size: 9 + 1 does not fit
    assert pack_rows([3, 5], 8) == [[0, 1]]  # 5 then 3 fills the row of 8 exactly
    assert pack_rows([2, 2, 2], 4) == [[0, 1], [2]]  # equal lengths: by index
    assert pack_rows([], 4) == []


def test_packed_sft_batch_equals_padded_batch(tiny_model, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    u = lambda s: [{"role": "user", "content": s}]  # noqa: E731
    a = lambda s: [{"role": "assistant", "content": s}]  # noqa: E731
    pairs = [("What is 37 + 5 ?", "42"), ("Reverse : a b c", "c b a"), ("Sort : 9 3 7 1", "1 3 7 9"),
             ("Word 2 of : the red fox", "red"), ("hal has 18 coins and loses 9 . How many coins ?", "9")]
    ds = Dataset.from_list([{"prompt": u(p), "completion": a(c)} for p, c in pairs])
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    args = SFTConfig(output_dir=str(tmp_path), report_to=[], completion_only_loss=True, use_cpu=True,
                     per_device_train_batch_size=len(pairs))
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    examples = [trainer.train_dataset[i] for i in range(len(pairs))]
    padded = trainer.data_collator(examples)
    packed = packed_collator(tok.pad_token_id, row_tokens=64)(examples)
    assert packed["input_ids"].shape[0] < len(pairs)  # several sequences share a row
    assert (packed["labels"] != -100).sum() == (padded["labels"] != -100).sum()

    # Expected: the completion tokens' mean NLL, each sequence scored alone (no batch, no padding)
    nll, count = torch.tensor(0.0), 0
    for ex in examples:
        ids = torch.tensor([ex["input_ids"]])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        target = torch.tensor(ex["labels"][1:])
        keep = target != -100
        nll = nll - logp[torch.arange(len(target))[keep], target[keep]].sum()
        count += int(keep.sum())
    want = nll / count
    want.backward()
    want_grads = [p.grad.clone() for p in model.parameters()]
    for batch in (padded, packed):
        model.zero_grad()
        got = trainer.compute_loss(model, dict(batch))
        got.backward()
        assert got.item() == pytest.approx(want.item(), rel=1e-5)
        for g, p in zip(want_grads, model.parameters()):
            assert torch.allclose(p.grad, g, atol=1e-6, rtol=1e-4)
