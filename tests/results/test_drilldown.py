"""The report's per-suite drill-down, rendered from small hand-made items.jsonl records and read
back as data (each table's header and cells, each paragraph): counts, means and orderings worked
out on paper. `parse` and `blocks` are the HTML reader test_report.py uses too."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from selm_bench.harness.reports import drilldown as dd

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


# ---------------------------------------------------------------- HTML as data
class Node:
    """An element: its tag, attributes and children (elements and text)."""

    def __init__(self, tag: str, attrs: dict) -> None:
        self.tag, self.attrs, self.children = tag, attrs, []

    def elements(self) -> list[Node]:
        return [c for c in self.children if isinstance(c, Node)]

    def find(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        """Every element below this one (document order) with this tag and class."""
        out = []
        for c in self.elements():
            if (tag is None or c.tag == tag) and (cls is None or cls in (c.attrs.get("class") or "").split()):
                out.append(c)
            out += c.find(tag, cls)
        return out

    def text(self) -> str:
        """The text below this element: each piece stripped, joined by one space."""
        parts = [c.strip() if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(p for p in parts if p)


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack = [Node("#document", {})]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        if any(n.tag == tag for n in self.stack[1:]):
            while self.stack.pop().tag != tag:
                pass

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree.stack[0]


def table_data(t: Node) -> tuple[list[str], list[list[str]]]:
    """A table's header cells (its last header row) and body rows as text."""
    head = t.find("thead")[0].find("tr")[-1] if t.find("thead") else None
    rows = t.find("tbody")[0].find("tr")
    return ([c.text() for c in head.elements()] if head else [], [[c.text() for c in tr.elements()] for tr in rows])


def blocks(html: str) -> list[tuple]:
    """The top-level pieces of an HTML fragment: ("table", header, rows) or (tag, class, text)."""
    return [("table", *table_data(n)) if n.tag == "table" else (n.tag, n.attrs.get("class"), n.text())
            for n in parse(html).elements()]


def kinds(html: str) -> list[str]:
    return [b[0] for b in blocks(html)]


def tables(html: str) -> list[tuple[list[str], list[list[str]]]]:
    return [b[1:] for b in blocks(html) if b[0] == "table"]


# ---------------------------------------------------------------- the helpers
def test_text_is_escaped_cut_and_json_for_anything_but_text():
    (div,) = parse(dd.text("a<b>c</b>")).elements()
    assert (div.tag, div.attrs, div.text(), div.elements()) == ("div", {"class": "txt"}, "a<b>c</b>", [])
    assert parse(dd.text(None)).elements()[0].text() == ""
    assert parse(dd.text("abcdef", 3)).elements()[0].text() == "abc […cut]"
    assert parse(dd.text("abc", 3)).elements()[0].text() == "abc"  # at the limit: not cut
    assert parse(dd.text({"a": 1})).elements()[0].text() == '{"a": 1}'


def test_fmt_rounds_numbers_and_passes_the_rest_as_text():
    assert (dd.fmt(0.123456), dd.fmt(2), dd.fmt(None), dd.fmt("x&y"), dd.fmt(True), dd.fmt(float("nan"))) == (
        "0.1235", "2", "", "x&y", "True", "nan")


def test_table_escapes_text_cells_and_keeps_html_cells():
    assert str(dd.table(["a", "b<"], [])).strip() == ""  # no rows: no table
    html = dd.table(["a", "b<"], [["<i>1</i>", dd.text("2")], [3, "x&y"]], cls="kv")
    (t,) = parse(html).elements()
    assert t.attrs == {"class": "kv"} and table_data(t) == (["a", "b<"], [["<i>1</i>", "2"], ["3", "x&y"]])
    assert [n.tag for n in t.find("td")[1].elements()] == ["div"] and not t.find("i")


# ---------------------------------------------------------------- each suite's section
def test_tiny_world_failures_per_category():
    items = [{"category": "add", "prompt": "1+1", "answer": "2", "response": "2", "score": 1.0, "correct": True},
             {"category": "add", "prompt": "2+2", "answer": "4", "response": "5", "score": 0.0, "correct": False},
             {"category": "add", "prompt": "3+3", "answer": "6", "response": "7", "score": 0.5, "correct": False},
             {"category": "rev", "prompt": "ab", "answer": "ba", "response": "ba", "score": 1.0}]  # no flag: score 1 = right
    # add: 1 of 3 right, mean score 0.5, 2 failures (the lowest-scored one shown, k=1); rev: all right
    html = dd.tiny_world(items, None, k=1)
    assert kinds(html) == ["table", "p", "table"]
    assert tables(html) == [
        (["category", "n", "accuracy", "mean score", "failures"], [["add", "3", "0.3333", "0.5", "2"], ["rev", "1", "1", "1", "0"]]),
        (["category", "prompt", "gold answer", "response", "score"], [["add", "2+2", "4", "5", "0"]])]
    assert kinds(dd.tiny_world(items[:1], None)) == ["table"]  # nothing failed: no failure table


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
    html = dd.mt_bench(items, None, k=1)
    assert kinds(html) == ["table", "p", "table"]
    assert tables(html) == [
        (["category", "ratings", "mean rating", "failed or missing judgments"], [["math", "1", "9", "0"],
                                                                                 ["writing", "2", "2.5", "1"]]),
        (["category", "question / turn", "question", "answer", "rating", "judgment"],
         [["math", "101 / 1", "M<1", "x", "9", "ok"], ["writing", "81 / 2", "turn 1: Q1 Q2", "A2", "2", "bad"]])]
    writing = parse(html).find("table")[1].find("tr")[2]
    assert [d.text() for d in writing.find("div", "muted")] == ["turn 1: Q1"]  # turn 1 apart from the question
    assert parse(html).find("table")[1].find("tr")[1].find("div", "muted") == []  # a first turn has none


def test_alpaca_eval_counts_failed_judgments_and_clearest_losses():
    items = [{"instruction": "i1", "output": "o1", "reference_output": "r1", "preference": 1.0, "category": "c1"},
             {"instruction": "i2", "output": "o2", "reference_output": "r2", "preference": 1.2, "category": "c1"},
             {"instruction": "i3", "preference": 2.0},
             {"instruction": "i4", "preference": 1.5},
             {"instruction": "i5", "preference": None, "judge_error": "HTTP 500"},
             {"instruction": "i6", "preference": 1.4, "category": "c0"}]
    html = dd.alpaca_eval(items, None, k=2)
    b = blocks(html)
    assert kinds(html) == ["p", "p", "div", "table", "p", "table"]
    assert counts(b[0][2]) == {"wins": 1, "losses": 3, "ties": 1, "not annotated": 1, "of": 6}
    assert b[1][2].startswith("1 failed") and b[2][1:] == ("txt", "HTTP 500")  # how many, the first one's reason
    assert tables(html) == [(["category", "losses"], [["c0", "1"], ["c1", "2"]]),
                            (["instruction", "model output", "reference output", "preference"],
                             [["i1", "o1", "r1", "1"], ["i2", "o2", "r2", "1.2"]])]  # the 2 clearest, clearest first
    assert b[4][2].startswith("The 2 ")
    only_win = dd.alpaca_eval([{"preference": 2}], None)
    assert kinds(only_win) == ["p"] and counts(blocks(only_win)[0][2]) == {"wins": 1, "losses": 0, "ties": 0,
                                                                            "not annotated": 0, "of": 1}


def counts(line: str) -> dict[str, int]:
    """`3 wins, 1 losses, ... (of 6; ...)` -> {"wins": 3, "losses": 1, ..., "of": 6}."""
    found = {k: int(n) for n, k in re.findall(r"(\d+) (wins|losses|ties|not annotated)", line)}
    return {**found, "of": int(re.search(r"\(of (\d+)", line).group(1))}


def members(cell: str) -> dict[str, str]:
    """A group's members cell (`original: ✗ semantic: ✓ ...`) as {kind: mark}."""
    return dict(re.findall(r"(\w+): (\S)", cell))


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
    html = dd.brainteaser(items, tmp_path)
    assert kinds(html) == ["table", "p", "table"]
    summary, missed = tables(html)
    assert summary == (["puzzle", "groups", "all three right", "complete groups"], [["SP", "2", "1", "1"], ["WP", "1", "0", "1"]])
    assert missed[0] == ["puzzle", "group", "members", "original question", "predicted", "gold"]
    assert [r[:2] + [members(r[2])] + r[3:] for r in missed[1]] == [
        ["SP", "SP-2", {"original": "✗", "semantic": "✓"}, "Q<2", "a", "b"],  # choices by index from the task file
        ["WP", "WP-1", {"original": "✗", "semantic": "✗", "context": "✓"}, "", "3", "0"]]  # no question: the indices


def test_brainteaser_without_labels_shows_predictions_only(tmp_path):
    html = dd.brainteaser([{"id": "SP-1", "pred": 0}], tmp_path)  # the test split: no `correct`
    assert kinds(html) == ["p"] and blocks(html)[0][2].startswith("No labels")


def test_brainteaser_items_without_id_or_puzzle_fall_in_group_question_mark(tmp_path):
    # no id: group "?" and kind "original" (no _SR/_CR suffix); no puzzle: puzzle "?"
    items = [{"correct": False, "pred": 1, "label": 2}, {"id": "x_SR", "correct": True}]
    assert tables(dd.brainteaser(items, tmp_path)) == [
        (["puzzle", "groups", "all three right", "complete groups"], [["?", "2", "0", "0"]]),
        (["puzzle", "group", "members", "original question", "predicted", "gold"], [["?", "?", "original: ✗", "", "1", "2"]])]


def test_brainteaser_shows_at_most_k_missed_groups(tmp_path):
    items = [{"id": f"SP-{g}", "puzzle": "SP", "correct": False, "pred": 0, "label": 1} for g in range(3)]
    (_, missed) = tables(dd.brainteaser(items, tmp_path, k=2))[1]
    assert [r[1] for r in missed] == ["SP-0", "SP-1"]


def test_lm_eval_per_task_and_the_generic_section():
    assert tables(dd.lm_eval([{"task": "arc", "score": 1}, {"task": "arc", "acc": 0}, {"task": "boolq", "score": 0.25}],
                             None)) == [(["task", "samples", "mean per-sample score"], [["arc", "2", "0.5"], ["boolq", "1", "0.25"]])]
    assert blocks(dd.generic([{"score": 1}, {"score": 0}, {"x": 1}], None)) == [("p", None, "3 items, mean score 0.5.")]
    assert blocks(dd.generic([], None)) == [("p", None, "0 items.")]


def test_a_suite_section_has_a_block_per_checkpoint_the_last_open(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "items.jsonl").write_text('{"task": "arc", "score": 1}\nnot json\n\n{"task": "arc", "score": 0}\n')
    assert dd.read_items(tmp_path / "a" / "items.jsonl") == ([], "no items.jsonl")
    doc = parse(dd.suite_section("lm-eval:arc", [("sft", tmp_path / "a"), ("dpo", tmp_path / "b")]))
    h3, *details = doc.elements()
    assert (h3.tag, h3.attrs, h3.text()) == ("h3", {"id": "suite-lm-eval"}, "lm-eval:arc")
    assert [(d.tag, "open" in d.attrs, d.find("summary")[0].text()) for d in details] == [
        ("details", False, "sft · 0 items"), ("details", True, "dpo · 2 items")]
    assert [e.tag for e in details[0].elements()] == ["summary", "p"]  # no records: one line
    _, note, table = details[1].elements()
    assert note.attrs == {"class": "muted"} and note.text().startswith("items.jsonl: line(s) 2 ")  # the bad line
    assert table_data(table) == (["task", "samples", "mean per-sample score"], [["arc", "2", "0.5"]])
    closed = parse(dd.suite_section("other", [("sft", tmp_path / "b")], open_last=False))
    assert ["open" in d.attrs for d in closed.find("details")] == [False]
    generic = parse(dd.suite_section("other", [("sft", tmp_path / "b")])).find("details")[0].elements()
    assert generic[-1].text() == "2 items, mean score 0.5."  # no drill-down of its own: the generic one
    assert sorted(["lm-eval:x", "zz", "alpaca-eval", "brainteaser", "mt-bench", "aa", "tiny-world"], key=dd.suite_order) == [
        "tiny-world", "mt-bench", "alpaca-eval", "brainteaser", "lm-eval:x", "aa", "zz"]


def test_a_long_judge_error_is_cut_at_500_characters():
    html = dd.alpaca_eval([{"preference": None, "judge_error": "e" * 600}], None)
    (reason,) = parse(html).find("div", "txt")
    assert reason.text() == "e" * 500 + " […cut]"


def test_text_from_items_is_escaped_in_every_suite_section(tmp_path):
    evil = "<script>alert(1)</script>"
    sections = [
        dd.tiny_world([{"category": evil, "prompt": evil, "answer": evil, "response": evil, "score": 0.0}], None),
        dd.mt_bench([{"question_id": evil, "category": evil, "turn": 2, "question": evil, "answer": evil, "score": 1,
                      "judgment": evil}, {"question_id": evil, "turn": 1, "question": evil, "score": 5}], None),
        dd.alpaca_eval([{"instruction": evil, "output": evil, "reference_output": evil, "preference": 1.0,
                         "category": evil}, {"preference": None, "judge_error": evil}], None),
        dd.brainteaser([{"id": evil, "puzzle": evil, "correct": False, "pred": evil, "label": evil}], tmp_path),
        dd.lm_eval([{"task": evil, "score": 1}], None),
        dd.suite_section(evil, [(evil, tmp_path)]),
    ]
    for html in sections:
        doc = parse(html)
        assert not doc.find("script") and evil in doc.text()
