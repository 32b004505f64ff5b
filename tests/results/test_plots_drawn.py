"""What each report plot draws: the matplotlib figure is caught before it becomes PNG bytes and
its panels, lines, error bars, labels, colours and ticks are compared with values worked out by
hand from small leaderboard rows and trainer logs."""

import json

import pytest
from matplotlib.colors import to_hex

from selm_bench.harness.reports import plots


@pytest.fixture
def drawn(monkeypatch):
    """Calls a plot function; returns its Figure (the PNG step replaced by a recorder)."""
    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or b"png")

    def draw(fn, *args, **kwargs):
        assert fn(*args, **kwargs) == b"png"
        (fig,) = figures
        figures.clear()
        return fig, [ax for ax in fig.axes if ax.get_visible()]
    return draw


def legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_panel_grid():
    fig, axes = plots._figure(4)
    assert len(axes) == 4 and len(fig.axes) == 6 and [a.get_visible() for a in fig.axes] == [True] * 4 + [False] * 2
    assert tuple(fig.get_size_inches()) == pytest.approx((3 * 4.6, 2 * 3.4)) and fig.get_dpi() == 90
    fig, axes = plots._figure(2, ncols=3, w=5.0, h=2.0)
    assert len(fig.axes) == 2 and tuple(fig.get_size_inches()) == pytest.approx((10.0, 2.0))
    assert plots._png(fig).startswith(b"\x89PNG\r\n\x1a\n")


def test_colours():
    assert [plots.color(m) for m in ("sft", "dpo", "iterative-dpo", "selm")] == ["#7f7f7f", "#222222", "#1f77b4", "#d62728"]
    assert plots.color("ab") == plots.EXTRA_COLORS[(97 + 98) % 7] == "#bcbd22"  # sum of the code points, mod 7


ROWS = [
    {"checkpoint": "sft", "method": "sft", "tiny-world/accuracy": 0.40},
    {"checkpoint": "dpo", "method": "dpo", "tiny-world/accuracy": 0.45, "tiny-world/accuracy_stderr": 0.02},
    {"checkpoint": "selm/iter-1", "method": "selm", "iteration": 1, "tiny-world/accuracy": 0.52,
     "tiny-world/accuracy_stderr": 0.016},
    {"checkpoint": "selm/iter-2", "method": "selm", "iteration": 2, "tiny-world/accuracy": 0.55},
    {"checkpoint": "iterative-dpo/iter-1", "method": "iterative-dpo", "iteration": 1, "tiny-world/accuracy": 0.50},
    {"checkpoint": "iterative-dpo/iter-2", "method": "iterative-dpo", "iteration": 2, "tiny-world/accuracy": 0.49},
]


def test_metric_vs_iteration_plot(drawn):
    fig, (ax,) = drawn(plots.metric_vs_iteration_plot, ROWS, "dpo")
    assert ax.get_title() == "tiny-world/accuracy" and ax.get_xlabel() == "iteration (0 = dpo)"
    refs = [ln for ln in ax.get_lines() if ln.get_label() in ("sft", "dpo")]
    assert [(ln.get_label(), list(ln.get_ydata()), to_hex(ln.get_color()), ln.get_linewidth()) for ln in refs] == [
        ("sft", [0.40, 0.40], "#7f7f7f", 1.2), ("dpo", [0.45, 0.45], "#222222", 1.2)]
    bars = {c.get_label(): c for c in ax.containers}
    assert list(bars) == ["selm", "iterative-dpo"]
    selm, idpo = bars["selm"].lines[0], bars["iterative-dpo"].lines[0]
    # two methods dodge by -0.02 and +0.02; both start at iteration 0 = dpo's 0.45
    assert list(selm.get_xdata()) == pytest.approx([-0.02, 0.98, 1.98]) and list(selm.get_ydata()) == [0.45, 0.52, 0.55]
    assert list(idpo.get_xdata()) == pytest.approx([0.02, 1.02, 2.02]) and list(idpo.get_ydata()) == [0.45, 0.50, 0.49]
    assert (selm.get_marker(), idpo.get_marker()) == ("o", "s")
    assert (to_hex(selm.get_color()), to_hex(idpo.get_color())) == ("#d62728", "#1f77b4")
    # selm's error bars: dpo's 0.02, 0.016, none (0); iterative-dpo has only dpo's stderr at 0
    (seg,) = bars["selm"].lines[2]
    assert [round(s[1][1] - s[0][1], 6) for s in seg.get_segments()] == [0.04, 0.032, 0.0]
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert legend(ax) == ["sft", "dpo", "selm", "iterative-dpo"]
    assert ax.title.get_fontsize() == 10 and {t.get_fontsize() for t in ax.get_legend().get_texts()} == {7}
    fig, (ax,) = drawn(plots.metric_vs_iteration_plot, ROWS[:2], None)  # references only
    assert ax.get_xlabel() == "iteration" and not ax.containers
    assert plots.metric_vs_iteration_plot([{"checkpoint": "x", "note": "text"}]) is None


def test_win_rate_plot(drawn):
    rows = [{"checkpoint": "sft", "alpaca-eval/win_rate": 40.0, "alpaca-eval/standard_error": 1.5,
             "alpaca-eval/length_controlled_winrate": 45.0},
            {"checkpoint": "selm/iter-1", "alpaca-eval/win_rate": 55.0, "alpaca-eval/lc_standard_error": 2.0},
            {"checkpoint": "dpo", "tiny-world/accuracy": 0.5}]  # no win rate: not drawn
    fig, (ax,) = drawn(plots.win_rate_plot, rows)
    assert ax.get_title() == "AlpacaEval" and ax.get_xlabel().startswith("win rate") and ax.get_xlabel().endswith("(%)")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sft", "selm/iter-1"] and ax.get_ylim() == (1.5, -0.5)
    wr, lc = ax.containers
    assert (list(wr.lines[0].get_xdata()), list(wr.lines[0].get_ydata())) == ([40.0, 55.0], [0, 1])
    assert (list(lc.lines[0].get_xdata()), list(lc.lines[0].get_ydata())) == ([45.0], [0.15])
    assert [round(s[1][0] - s[0][0], 6) for s in wr.lines[2][0].get_segments()] == [3.0, 0.0]  # ± 1.5; none
    assert (wr.lines[0].get_marker(), lc.lines[0].get_marker()) == ("o", "s")
    assert (to_hex(wr.lines[0].get_color()), to_hex(lc.lines[0].get_color())) == ("#1f77b4", "#ff7f0e")
    # each series names its metric and its bars
    assert [tuple(t.split(" ± ")) for t in legend(ax)] == [("win_rate", "standard error"),
                                                           ("length_controlled_winrate", "standard error")]
    (fifty,) = [ln for ln in ax.get_lines() if list(ln.get_xdata()) == [50, 50]]
    assert fifty.get_linestyle() == ":"
    assert plots.win_rate_plot(rows[2:]) is None


def test_mt_bench_category_plot(drawn):
    rows = [{"checkpoint": "sft", "mt-bench/category/writing": 6.0, "mt-bench/category/math": 2.0},
            {"checkpoint": "selm/iter-2", "mt-bench/category/writing": 7.5},
            {"checkpoint": "dpo", "mt-bench/score": 5.0}]
    fig, (ax,) = drawn(plots.mt_bench_category_plot, rows)
    assert (ax.get_title(), ax.get_ylabel(), ax.get_ylim()) == ("MT-Bench per category", "mean rating (1-10)", (0.0, 10.0))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["math", "writing"]  # sorted
    assert list(ax.get_xticks()) == pytest.approx([0.2, 1.2])  # 0.4 - width / 2 with two checkpoints (width 0.4)
    sft, selm = ax.containers
    assert [v for p in sft.patches for v in (p.get_x(), p.get_height(), p.get_width())] == pytest.approx(
        [-0.2, 2.0, 0.4, 0.8, 6.0, 0.4])
    assert [v for p in selm.patches for v in (p.get_x(), p.get_height())] == pytest.approx([0.2, 0.0, 1.2, 7.5])  # no math: 0
    assert to_hex(sft.patches[0].get_facecolor()) == "#7f7f7f" and to_hex(selm.patches[0].get_facecolor()) == "#d62728"
    assert [sft.patches[0].get_alpha(), selm.patches[0].get_alpha()] == pytest.approx([0.45 + 0.55 / 2, 1.0])
    assert legend(ax) == ["sft", "selm/iter-2"]
    fig, _ = drawn(plots.mt_bench_category_plot, rows[:1])
    assert tuple(fig.get_size_inches()) == pytest.approx((7.0, 3.8))  # 0.25 x 2 x 1 + 2 is under the 7-inch floor
    assert plots.mt_bench_category_plot(rows[2:]) is None


def test_training_curves_plot(drawn, tmp_path):
    def write(name, log, alpha=None):
        d = tmp_path / "checkpoints" / name / "model"
        d.mkdir(parents=True)
        (d / "train_log.json").write_text(json.dumps(log))
        if alpha is not None:
            (d / "spec.json").write_text(json.dumps({"alpha": alpha}))

    write("sft", [{"loss": 3.0, "step": 5}, {"loss": 1.0, "step": 10}])
    pref = lambda s, ref=None: {"loss": 0.7 - s / 100, "rewards/chosen": s / 10, "rewards/rejected": -s / 10,
                                "rewards/margins": s / 5, "rewards/accuracies": 0.5, "step": s,
                                **({"rewards/ref_response": ref} if ref is not None else {})}
    write("dpo", [pref(1), pref(2)])
    write("selm/iter-1", [pref(1, -0.1), pref(2, -0.2)], alpha=0.001)
    write("selm/iter-2", [pref(1, -0.3)], alpha=0.001)
    fig, axes = drawn(plots.training_curves_plot, tmp_path)
    assert [ax.get_title() for ax in axes] == ["SFT loss"] + [t for t, _ in plots.TRAIN_PANELS]
    assert len({ax.get_xlabel() for ax in axes}) == 1 and axes[0].get_xlabel().startswith("step")  # one shared x axis
    sft_ax, loss_ax, _, rewards_ax, _, ref_ax = axes
    assert [(ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata())) for ln in sft_ax.get_lines()] == [
        ("sft", [5, 10], [3.0, 1.0])]
    assert [(ln.get_label(), list(ln.get_xdata())) for ln in loss_ax.get_lines()] == [("dpo", [1, 2]), ("selm", [1, 2, 3])]
    assert [ln.get_linewidth() for ln in loss_ax.get_lines()] == [2.6, pytest.approx(1.9)]
    chosen_rejected = [(ln.get_label(), ln.get_linestyle()) for ln in rewards_ax.get_lines()]
    assert [ls for _, ls in chosen_rejected] == ["-", "-", "--", "--"] and legend(rewards_ax) == ["dpo", "selm"]
    (ref,) = ref_ax.get_lines()
    assert (ref.get_label(), list(ref.get_ydata()), to_hex(ref.get_color())) == ("selm (α=0.001)", [-0.1, -0.2, -0.3], "#d62728")
    assert plots.training_curves_plot(tmp_path / "none") is None


def test_sweep_plot(drawn):
    row = lambda acc, ckpt="selm/iter-2": {"checkpoint": ckpt, "method": ckpt.split("/")[0],
                                           "iteration": 2 if "/" in ckpt else None, "tiny-world/accuracy": acc}
    cells = [{"params": {"online.alpha": a}, "seed": s, "rows": [row(acc), row(0.3, "sft")]}
             for a, s, acc in (("0", 0, 0.5), ("0", 1, 0.7), ("0.001", 0, 0.6), ("1", 0, 0.8))]
    fig, (ax,) = drawn(plots.sweep_plot, cells, "online.alpha", ["tiny-world/accuracy"])
    assert (ax.get_title(), ax.get_xlabel(), ax.get_xscale()) == ("tiny-world/accuracy", "online.alpha", "symlog")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.001", "1"]
    selm, sft = ax.containers
    assert (selm.get_label(), list(selm.lines[0].get_xdata())) == ("selm/iter-2", [0.0, 0.001, 1.0])
    assert list(selm.lines[0].get_ydata()) == pytest.approx([0.6, 0.6, 0.8])
    assert [round(s[1][1] - s[0][1], 6) for s in selm.lines[2][0].get_segments()] == pytest.approx(
        [2 * 0.141421, 0.0, 0.0], abs=1e-5)  # the std of 0.5 and 0.7 on each side; one seed, no stderr: 0
    assert to_hex(selm.lines[0].get_color()) == "#d62728" and to_hex(sft.lines[0].get_color()) == "#7f7f7f"
    narrow = [{**c, "params": {"online.alpha": {"0": "0.1", "0.001": "0.2", "1": "0.3"}[c["params"]["online.alpha"]]}}
              for c in cells]
    fig, (ax,) = drawn(plots.sweep_plot, narrow, "online.alpha", ["tiny-world/accuracy"])
    assert ax.get_xscale() == "linear"  # 0.3 / 0.1 < 100
    words = [{**c, "params": {"online.ranker": {"0": "pairrm", "0.001": "oracle", "1": "judge"}[c["params"]["online.alpha"]]}}
             for c in cells]
    fig, (ax,) = drawn(plots.sweep_plot, words, "online.ranker", ["tiny-world/accuracy"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["judge", "oracle", "pairrm"]  # sorted text on 0, 1, 2
    line = ax.containers[0].lines[0]
    assert list(line.get_xdata()) == [0, 1, 2] and list(line.get_ydata()) == pytest.approx([0.8, 0.6, 0.6])
    assert plots.sweep_plot(cells, "online.beta", ["tiny-world/accuracy"]) is None


@pytest.mark.parametrize("values, scale", [(("0", "0.01", "1"), "symlog"), (("0.01", "0.99"), "linear")])
def test_sweep_plot_log_axis_from_a_hundredfold_span(drawn, values, scale):
    """The swept values' axis turns logarithmic once its nonzero values span 100x or more (zero left out):
    0.01 to 1 does, 0.01 to 0.99 (99x) does not."""
    cells = [{"params": {"online.alpha": v}, "seed": 0,
              "rows": [{"checkpoint": "selm/iter-2", "method": "selm", "iteration": 2, "tiny-world/accuracy": 0.5}]}
             for v in values]
    fig, (ax,) = drawn(plots.sweep_plot, cells, "online.alpha", ["tiny-world/accuracy"])
    assert ax.get_xscale() == scale


def test_sweep_plot_puts_numbers_in_numeric_order_before_text_values(drawn):
    """A sweep over a setting whose values mix numbers and text ("none"): the x axis shows the numbers
    first, in numeric order (9 before 10), then the text values, each point above its own tick."""
    accs = {10: 0.7, 9: 0.6, "none": 0.4}  # as the sweep config types them
    cells = [{"params": {"online.max_pairs": v}, "seed": 0,
              "rows": [{"checkpoint": "selm/iter-2", "method": "selm", "iteration": 2, "tiny-world/accuracy": a}]}
             for v, a in accs.items()]
    fig, (ax,) = drawn(plots.sweep_plot, cells, "online.max_pairs", ["tiny-world/accuracy"])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["9", "10", "none"]
    line = ax.containers[0].lines[0]
    assert list(line.get_xdata()) == [0, 1, 2] and list(line.get_ydata()) == pytest.approx([0.6, 0.7, 0.4])
