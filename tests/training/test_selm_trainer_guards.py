"""SELMTrainer refuses what it does not implement, each in one line naming the option: plain DPOConfig
args, padding-free batches, and DPO loss variants other than the sigmoid loss."""

import pytest


def _build(tiny_model, tmp_path, config_cls_name="SELMConfig", positional=False, **extra):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    from selm_bench.trainers.selm_trainer import SELMConfig, SELMTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    common = dict(output_dir=str(tmp_path), per_device_train_batch_size=1, bf16=False, use_cpu=True, report_to=[],
                  max_length=32, max_steps=1, save_strategy="no", **extra)
    args = SELMConfig(**common) if config_cls_name == "SELMConfig" else DPOConfig(**common)
    row = {"prompt": [{"role": "user", "content": "1 + 1 ?"}], "chosen": [{"role": "assistant", "content": "2"}],
           "rejected": [{"role": "assistant", "content": "3"}], "ref_response": [{"role": "assistant", "content": "2"}]}
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    if positional:  # DPOTrainer(model, ref_model, args, ...)
        return SELMTrainer(model, None, args, processing_class=tok, train_dataset=Dataset.from_list([row]))
    return SELMTrainer(model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list([row]))


@pytest.mark.parametrize("positional", [False, True])
def test_plain_dpo_config_is_refused_before_any_set_up(tiny_model, tmp_path, positional):
    # before the fix, DPOTrainer's set-up ran first and failed on a SELM-only field (max_prompt_length)
    with pytest.raises(TypeError) as err:
        _build(tiny_model, tmp_path, config_cls_name="DPOConfig", positional=positional)
    assert str(err.value) == "SELMTrainer needs args=SELMConfig(...)"


@pytest.mark.parametrize("field,value", [("loss_type", ["hinge"]), ("label_smoothing", 0.1), ("use_weighting", True)])
def test_loss_variants_other_than_sigmoid_are_refused(tiny_model, tmp_path, field, value):
    with pytest.raises(ValueError) as err:
        _build(tiny_model, tmp_path, **{field: value})
    msg = str(err.value)
    assert msg.startswith("SELMTrainer ") and "sigmoid" in msg and f"{field}={value!r}" in msg  # the option refused


@pytest.mark.parametrize("positional", [False, True])
def test_the_sigmoid_loss_given_explicitly_is_accepted(tiny_model, tmp_path, positional):
    trainer = _build(tiny_model, tmp_path, positional=positional, loss_type=["sigmoid"], label_smoothing=0.0, alpha=0.25)
    assert trainer.alpha == 0.25
