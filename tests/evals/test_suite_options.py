"""Each suite's options model: the documented names, typed values, defaults in one place; strict,
frozen and bounded; and the errors a bad option gives, naming the suite and the option."""

import pytest
from pydantic import BaseModel, ValidationError

from selm_bench.evals.base import EvalContext, SuiteError, validated_options, validation_message
from selm_bench.harness.core import registry

# Written by hand from the defaults the suites used before options were typed.
EXPECTED_DEFAULTS = {
    "tiny-world": {"split": "eval", "limit": None, "max_new_tokens": 24},
    "mt-bench": {"source": None, "question_limit": None, "limit": None, "max_new_tokens": None},
    "alpaca-eval": {"limit": None, "max_new_tokens": None, "temperature": 0.0, "top_p": 1.0,
                    "annotators_config": "weighted_alpaca_eval_gpt4_turbo"},
    "lm-eval": {"tasks": None, "num_fewshot": None, "include_path": None, "batch_size": None, "limit": None,
                "apply_chat_template": False},
    "brainteaser": {"split": "train", "puzzles": ["SP", "WP"], "mode": "loglikelihood", "score": "acc",
                    "num_fewshot": 0, "limit": None, "max_new_tokens": 32, "batch_size": None,
                    "apply_chat_template": False},
}

# Every documented option set to a valid non-default value (the user-facing names).
VALID = {
    "tiny-world": {"split": "dev", "limit": 5, "max_new_tokens": 64},
    "mt-bench": {"source": "fastchat", "question_limit": 10, "limit": 3, "max_new_tokens": 64},
    "alpaca-eval": {"limit": 5, "max_new_tokens": 128, "temperature": 0.7, "top_p": 0.9,
                    "annotators_config": "alpaca_eval_gpt4"},
    "lm-eval": {"tasks": "hellaswag,arc_easy", "num_fewshot": 5, "include_path": "/abs/dir", "batch_size": 8,
                "limit": 0.5, "apply_chat_template": True},
    "brainteaser": {"split": "test", "puzzles": ["WP"], "mode": "generate", "score": "acc_norm", "num_fewshot": 2,
                    "limit": 3, "max_new_tokens": 16, "batch_size": 4, "apply_chat_template": True},
}

# A wrong type for one option of each suite.
WRONG_TYPE = {
    "tiny-world": {"max_new_tokens": "many"},
    "mt-bench": {"limit": "all"},
    "alpaca-eval": {"temperature": "hot"},
    "lm-eval": {"batch_size": [8]},
    "brainteaser": {"num_fewshot": "two"},
}


def test_every_suite_has_a_model_and_is_covered():
    assert sorted(registry.names("suite")) == sorted(EXPECTED_DEFAULTS)
    for name in registry.names("suite"):
        model = registry.suite_options(name)
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for field_name, f in model.model_fields.items():
            assert f.description, f"{name}.{field_name} has no description"
    assert registry.suite_options("lm-eval:openllm") is registry.suite_options("lm-eval")


@pytest.mark.parametrize("suite", sorted(EXPECTED_DEFAULTS))
def test_defaults(suite):
    assert validated_options(suite, {}) == EXPECTED_DEFAULTS[suite]
    assert validated_options(suite, None) == EXPECTED_DEFAULTS[suite]


@pytest.mark.parametrize("suite", sorted(VALID))
def test_accepts_documented_options(suite):
    out = validated_options(suite, VALID[suite])
    assert set(out) == set(EXPECTED_DEFAULTS[suite])
    for key, value in VALID[suite].items():
        if suite == "lm-eval" and key == "tasks":
            assert out[key] == value  # kept as given; the suite splits the comma string
        else:
            assert out[key] == value, key
    # Validated output validates again to itself (what `selm-bench judge` reads back from metrics.json).
    assert validated_options(suite, out) == out


@pytest.mark.parametrize("suite", sorted(EXPECTED_DEFAULTS))
def test_rejects_unknown_key_and_wrong_type(suite):
    model = registry.suite_options(suite)
    with pytest.raises(ValidationError) as err:
        model.model_validate({"no_such_option": 1})
    assert err.value.errors()[0]["loc"] == ("no_such_option",)
    with pytest.raises(ValidationError) as err:
        model.model_validate(WRONG_TYPE[suite])
    assert err.value.errors()[0]["loc"][0] == next(iter(WRONG_TYPE[suite]))


@pytest.mark.parametrize("suite,raw", [
    ("tiny-world", {"limit": 0}), ("tiny-world", {"split": "../x"}), ("tiny-world", {"limit": True}),
    ("mt-bench", {"source": "gpt"}), ("mt-bench", {"max_new_tokens": 0}),
    # strict: no coercion of a bool, a numeric string or a float, and no case folding of `source`
    ("mt-bench", {"limit": True}), ("mt-bench", {"question_limit": "2"}), ("mt-bench", {"max_new_tokens": 8.0}),
    ("mt-bench", {"source": "Tiny"}),
    ("alpaca-eval", {"limit": 0}), ("alpaca-eval", {"limit": True}), ("alpaca-eval", {"top_p": 1.5}),
    ("alpaca-eval", {"temperature": -1.0}), ("alpaca-eval", {"max_new_tokens": 0}), ("alpaca-eval", {"top_p": 0.0}),
    ("alpaca-eval", {"annotators_config": ""}),
    ("lm-eval", {"include_path": "rel/dir"}), ("lm-eval", {"limit": 0}), ("lm-eval", {"num_fewshot": -1}),
    ("lm-eval", {"num_fewshot": "3"}),
    ("brainteaser", {"puzzles": "SP,XP"}), ("brainteaser", {"puzzles": []}), ("brainteaser", {"mode": "sample"}),
    ("brainteaser", {"score": "f1"}), ("brainteaser", {"num_fewshot": -1}), ("brainteaser", {"num_fewshot": "2"}),
    ("brainteaser", {"split": "../x"}),
])
def test_rejects_bad_values(suite, raw):
    with pytest.raises(ValidationError):
        validated_options(suite, raw)


@pytest.mark.parametrize("suite,raw", [
    ("tiny-world", {"limit": 1, "max_new_tokens": 1, "split": "dev_2-b"}),
    ("mt-bench", {"question_limit": 1, "limit": 1, "max_new_tokens": 1}),
    ("alpaca-eval", {"limit": 1, "max_new_tokens": 1, "top_p": 1.0, "temperature": 0.0, "annotators_config": "x"}),
    ("lm-eval", {"num_fewshot": 0, "batch_size": 1, "limit": 0.5}),
    ("brainteaser", {"split": "dev_2", "limit": 1, "max_new_tokens": 1, "batch_size": 1, "num_fewshot": 0}),
])
def test_accepts_values_at_the_lower_bounds(suite, raw):
    """Each bound is inclusive where the documentation says "at least": 1 (0 few-shot examples, a
    0.5 fraction of lm-eval's tasks, top_p 1 and temperature 0), and split names with _ and -."""
    assert validated_options(suite, raw) == {**EXPECTED_DEFAULTS[suite], **raw}


@pytest.mark.parametrize("suite", sorted(EXPECTED_DEFAULTS))
def test_validated_options_are_frozen(suite):
    model = registry.suite_options(suite)
    opts = model()
    with pytest.raises(ValidationError):
        opts.limit = 3


def test_a_relative_include_path_is_refused_naming_the_option():
    model = registry.suite_options("lm-eval")
    with pytest.raises(ValidationError) as err:
        model.model_validate({"include_path": "rel/dir"})
    (error,) = err.value.errors()
    assert error["loc"] == ("include_path",) and "absolute" in error["msg"] and "'rel/dir'" in error["msg"]


def test_accepted_spellings():
    assert validated_options("brainteaser", {"puzzles": "sp, wp"})["puzzles"] == ["SP", "WP"]
    assert validated_options("brainteaser", {"puzzles": "WP"})["puzzles"] == ["WP"]
    assert validated_options("brainteaser", {"puzzles": ["sp"]})["puzzles"] == ["SP"]
    assert validated_options("brainteaser", {"puzzles": "SP, ,wp"})["puzzles"] == ["SP", "WP"]  # empty parts dropped
    assert validated_options("lm-eval", {"tasks": ["arc_easy", "hellaswag"]})["tasks"] == ["arc_easy", "hellaswag"]
    assert validated_options("lm-eval", {"limit": 10})["limit"] == 10
    assert validated_options("alpaca-eval", {"temperature": 0})["temperature"] == 0.0  # an int is a float
    assert validated_options("mt-bench", {"source": "tiny"})["source"] == "tiny"


def test_context_option_reads_full_or_partial_dicts(tmp_path):
    ctx = EvalContext(model="m", name="m", out_dir=tmp_path, options={"limit": 3}, suite="tiny-world")
    assert (ctx.option("limit"), ctx.option("split"), ctx.option("max_new_tokens")) == (3, "eval", 24)
    full = EvalContext(model="m", name="m", out_dir=tmp_path, suite="tiny-world",
                       options=validated_options("tiny-world", {"split": "dev"}))
    assert full.option("split") == "dev" and full.option("limit") is None
    anonymous = EvalContext(model="m", name="m", out_dir=tmp_path)
    assert anonymous.for_suite("mt-bench").option("max_new_tokens") is None
    assert anonymous.for_suite("tiny-world").suite == "mt-bench"  # a named suite is kept


def test_option_errors_name_the_suite_and_the_option(tmp_path):
    def ctx(**kw):
        return EvalContext(model="m", name="n", out_dir=tmp_path, **kw)

    with pytest.raises(SuiteError) as err:
        ctx().option("limit")
    assert "'limit'" in str(err.value) and "names no suite" in str(err.value)
    # a bad value anywhere in the options fails any read, naming suite.option
    with pytest.raises(SuiteError) as err:
        ctx(suite="tiny-world", options={"limit": 0}).option("split")
    assert str(err.value).startswith("bad option: tiny-world.limit: ")
    # a preset suite ("lm-eval:openllm") is named by its base suite
    with pytest.raises(SuiteError) as err:
        ctx(suite="lm-eval:openllm", options={"nope": 1}).option("limit")
    assert str(err.value).startswith("bad option: lm-eval.nope: ")
    with pytest.raises(KeyError) as err:
        ctx(suite="tiny-world").option("no_such_option")
    assert "'tiny-world'" in err.value.args[0] and "'no_such_option'" in err.value.args[0]
    with pytest.raises(SuiteError) as err:
        validated_options("no-such-suite", {})
    assert "'no-such-suite'" in str(err.value)


def test_validation_message_joins_each_location_with_its_error():
    class Err:
        def errors(self):
            return [{"loc": ("puzzles", 0), "msg": "bad item"}, {"loc": (), "msg": "whole model"},
                    {"loc": ("x",)}, {}]

    # "; "-separated "<suite>.<location>: <message>", "invalid" where pydantic gave no message
    assert validation_message("s", Err()).split("; ") == ["s.puzzles.0: bad item", "s: whole model", "s.x: invalid",
                                                          "s: invalid"]
    model = registry.suite_options("tiny-world")
    with pytest.raises(ValidationError) as err:
        model.model_validate({"limit": 0, "max_new_tokens": 0})
    parts = validation_message("tiny-world", err.value).split("; ")
    assert [p.split(": ")[0] for p in parts] == ["tiny-world.limit", "tiny-world.max_new_tokens"]
    assert [p.split(": ", 1)[1] for p in parts] == [e["msg"] for e in err.value.errors()]  # pydantic's own words


def test_mode_dependent_max_new_tokens(tmp_path):
    from selm_bench.evals import alpaca_eval, mt_bench

    def ctx(suite, **kw):
        return EvalContext(model="m", name="m", out_dir=tmp_path, suite=suite, **kw)

    assert mt_bench.max_new_tokens(ctx("mt-bench")) == 1024
    assert mt_bench.max_new_tokens(ctx("mt-bench", world_dir=tmp_path)) == 24
    assert mt_bench.max_new_tokens(ctx("mt-bench", world_dir=tmp_path, options={"source": "fastchat"})) == 1024
    assert mt_bench.max_new_tokens(ctx("mt-bench", options={"max_new_tokens": 64})) == 64
    assert alpaca_eval.max_new_tokens(ctx("alpaca-eval")) == 2048
    assert alpaca_eval.max_new_tokens(ctx("alpaca-eval", world_dir=tmp_path)) == 24
    assert alpaca_eval.max_new_tokens(ctx("alpaca-eval", world_dir=tmp_path, options={"max_new_tokens": 6})) == 6


def test_mt_bench_question_limit_wins_over_limit(tmp_path, tiny_world):
    from selm_bench.evals import mt_bench

    def n(options):
        ctx = EvalContext(model="m", name="m", out_dir=tmp_path, world_dir=tiny_world, options=options)
        return len(mt_bench.load_mt_questions(ctx))

    assert n({"limit": 3}) == 3
    assert n({"question_limit": 2, "limit": 3}) == 2
    assert n(validated_options("mt-bench", {"limit": 1})) == 1
