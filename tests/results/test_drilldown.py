"""The report's per-suite drill-down, rendered from small hand-made items.jsonl records and
compared with HTML written out by hand (counts, means and orderings worked out on paper)."""

import json

from selm_bench.harness.reports import drilldown as dd


def T(s: str) -> str:  # a text cell as written by hand
    return f'<div class="txt">{s}</div>'


def table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="items"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def test_text_fmt_and_table():
    assert dd.text("a<b") == T("a&lt;b") and dd.text(None) == T("")
    assert dd.text("abcdef", 3) == T("abc […cut]") and dd.text("abc", 3) == T("abc")
    assert dd.text({"a": 1}) == T("{&quot;a&quot;: 1}")
    assert (dd.fmt(0.123456), dd.fmt(2), dd.fmt(None), dd.fmt("x&y"), dd.fmt(True)) == ("0.1235", "2", "", "x&amp;y", "True")
    assert dd.table(["a", "b<"], []) == ""
    assert dd.table(["a", "b<"], [["1", "2"]], cls="kv") == (
        '<table class="kv"><thead><tr><th>a</th><th>b&lt;</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>')


def test_tiny_world_failures_per_category():
    items = [{"category": "add", "prompt": "1+1", "answer": "2", "response": "2", "score": 1.0, "correct": True},
             {"category": "add", "prompt": "2+2", "answer": "4", "response": "5", "score": 0.0, "correct": False},
             {"category": "add", "prompt": "3+3", "answer": "6", "response": "7", "score": 0.5, "correct": False},
             {"category": "rev", "prompt": "ab", "answer": "ba", "response": "ba", "score": 1.0}]  # no flag: score 1 = right
    # add: 1 of 3 right, mean score 0.5, 2 failures (the lowest-scored one shown, k=1); rev: all right
    assert dd.tiny_world(items, None, k=1) == (
        table(["category", "n", "accuracy", "mean score", "failures"], [["add", "3", "0.3333", "0.5", "2"],
                                                                        ["rev", "1", "1", "1", "0"]])
        + "<p>Lowest-scored failures (up to 1 per category):</p>"
        + table(["category", "prompt", "gold answer", "response", "score"], [["add", T("2+2"), T("4"), T("5"), "0"]]))


def test_mt_bench_lowest_rated_with_turn_one():
    items = [{"question_id": 81, "category": "writing", "turn": 1, "question": "Q1", "answer": "A1", "score": 3,
              "judgment": "meh"},
             {"question_id": 81, "category": "writing", "turn": 2, "question": "Q2", "answer": "A2", "score": 2,
              "judgment": "bad"},
             {"question_id": 82, "category": "writing", "turn": 1, "question": "Q3", "answer": "A3", "score": -1,
              "judgment": "failed"},
             {"question_id": 101, "category": "math", "turn": 1, "question": "M<1", "answer": "x", "score": 9,
              "judgment": "ok"}]
    # writing: ratings 3 and 2 (mean 2.5), the -1 left out and counted; lowest: 81 turn 2, shown with its turn 1
    assert dd.mt_bench(items, None, k=1) == (
        table(["category", "ratings", "mean rating", "failed or missing judgments"],
              [["math", "1", "9", "0"], ["writing", "2", "2.5", "1"]])
        + "<p>Lowest-rated answers (up to 1 per category) and the judge's explanation:</p>"
        + table(["category", "question / turn", "question", "answer", "rating", "judgment"],
                [["math", "101 / 1", T("M&lt;1"), T("x"), "9", T("ok")],
                 ["writing", "81 / 2", '<div class="muted">turn 1: Q1</div>' + T("Q2"), T("A2"), "2", T("bad")]]))


def test_alpaca_eval_losses():
    items = [{"instruction": "i1", "output": "o1", "reference_output": "r1", "preference": 1.0, "category": "c1"},
             {"instruction": "i2", "output": "o2", "reference_output": "r2", "preference": 1.2, "category": "c1"},
             {"instruction": "i3", "preference": 2.0},
             {"instruction": "i4", "preference": 1.5},
             {"instruction": "i5", "preference": None, "judge_error": "HTTP 500"},
             {"instruction": "i6", "preference": 1.4, "category": "c0"}]
    assert dd.alpaca_eval(items, None, k=2) == (
        "<p>1 wins, 3 losses, 1 ties, 1 not annotated (of 6; preference 1 = reference preferred, 2 = model preferred).</p>"
        "<p>1 failed judgments; the first one's reason:</p>" + T("HTTP 500")
        + table(["category", "losses"], [["c0", "1"], ["c1", "2"]])
        + "<p>The 2 clearest losses:</p>"
        + table(["instruction", "model output", "reference output", "preference"],
                [[T("i1"), T("o1"), T("r1"), "1"], [T("i2"), T("o2"), T("r2"), "1.2"]]))
    assert dd.alpaca_eval([{"preference": 2}], None) == (
        "<p>1 wins, 0 losses, 0 ties, 0 not annotated (of 1; preference 1 = reference preferred, 2 = model preferred).</p>")


def test_brainteaser_groups(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "sp.jsonl").write_text(json.dumps({"id": "SP-2", "question": "Q<2",
                                                             "choice_list": ["a", "b", "c", "d"]}) + "\n")
    items = [{"id": "SP-1", "puzzle": "SP", "correct": True}, {"id": "SP-1_SR", "puzzle": "SP", "correct": True},
             {"id": "SP-1_CR", "puzzle": "SP", "correct": True},
             {"id": "SP-2", "puzzle": "SP", "correct": False, "pred": 0, "label": 1},
             {"id": "SP-2_SR", "puzzle": "SP", "correct": True},  # no context member: an incomplete group
             {"id": "WP-1", "puzzle": "WP", "correct": False, "pred": 3, "label": 0},
             {"id": "WP-1_SR", "puzzle": "WP", "correct": False}, {"id": "WP-1_CR", "puzzle": "WP", "correct": True}]
    assert dd.brainteaser(items, tmp_path) == (
        table(["puzzle", "groups", "all three right", "complete groups"], [["SP", "2", "1", "1"], ["WP", "1", "0", "1"]])
        + "<p>Groups with a miss (first 10; predicted and gold answers of the original):</p>"
        + table(["puzzle", "group", "members", "original question", "predicted", "gold"],
                [["SP", "SP-2", "original: ✗ semantic: ✓", T("Q&lt;2"), "a", "b"],
                 ["WP", "WP-1", "original: ✗ semantic: ✗ context: ✓", T(""), "3", "0"]]))
    assert dd.brainteaser([{"id": "SP-1", "pred": 0}], tmp_path) == (
        "<p>No labels (test split): predictions only, no accuracy.</p>")


def test_brainteaser_items_without_id_or_puzzle_fall_in_group_question_mark(tmp_path):
    # no id: group "?" and kind "original" (no _SR/_CR suffix); no puzzle: puzzle "?"
    items = [{"correct": False, "pred": 1, "label": 2}, {"id": "x_SR", "correct": True}]
    assert dd.brainteaser(items, tmp_path) == (
        table(["puzzle", "groups", "all three right", "complete groups"], [["?", "2", "0", "0"]])
        + "<p>Groups with a miss (first 10; predicted and gold answers of the original):</p>"
        + table(["puzzle", "group", "members", "original question", "predicted", "gold"],
                [["?", "?", "original: ✗", T(""), "1", "2"]]))


def test_lm_eval_generic_and_sections(tmp_path):
    assert dd.lm_eval([{"task": "arc", "score": 1}, {"task": "arc", "acc": 0}, {"task": "boolq", "score": 0.25}], None) == (
        table(["task", "samples", "mean per-sample score"], [["arc", "2", "0.5"], ["boolq", "1", "0.25"]]))
    assert dd.generic([{"score": 1}, {"score": 0}, {"x": 1}], None) == "<p>3 items, mean score 0.5.</p>"
    assert dd.generic([], None) == "<p>0 items.</p>"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "items.jsonl").write_text('{"task": "arc", "score": 1}\nnot json\n\n{"task": "arc", "score": 0}\n')
    assert dd.read_items(tmp_path / "a" / "items.jsonl") == ([], "no items.jsonl")
    assert dd.suite_section("lm-eval:arc", [("sft", tmp_path / "a"), ("dpo", tmp_path / "b")]) == (
        '<h3 id="suite-lm-eval">lm-eval:arc</h3>'
        "<details><summary>sft · 0 items</summary><p>No per-item records.</p></details>"
        '<details open><summary>dpo · 2 items</summary><p class="muted">items.jsonl: line(s) 2 not valid JSON, skipped</p>'
        + table(["task", "samples", "mean per-sample score"], [["arc", "2", "0.5"]]) + "</details>")
    assert dd.suite_section("other", [("sft", tmp_path / "b")], open_last=False).startswith(
        '<h3 id="suite-other">other</h3><details><summary>sft · 2 items</summary><p class="muted">')
    assert "<p>2 items, mean score 0.5.</p></details>" in dd.suite_section("other", [("sft", tmp_path / "b")])
    assert sorted(["lm-eval:x", "zz", "alpaca-eval", "brainteaser", "mt-bench", "aa", "tiny-world"], key=dd.suite_order) == [
        "tiny-world", "mt-bench", "alpaca-eval", "brainteaser", "lm-eval:x", "aa", "zz"]


def test_brainteaser_shows_at_most_k_missed_groups(tmp_path):
    items = [{"id": f"SP-{g}", "puzzle": "SP", "correct": False, "pred": 0, "label": 1} for g in range(3)]
    html = dd.brainteaser(items, tmp_path, k=2)
    assert html.count("<td>SP-") == 2 and "first 2;" in html


def test_a_long_judge_error_is_cut_at_500_characters():
    html = dd.alpaca_eval([{"preference": None, "judge_error": "e" * 600}], None)
    assert T("e" * 500 + " […cut]") in html and "e" * 501 not in html
