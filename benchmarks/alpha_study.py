"""The α study (docs/measurements.md, "The α study"): table and plot from two sweeps.

Each sweep is `selm-bench sweep --grid online.alpha=... --seeds 0,1,2 --methods selm --suites
tiny-world` (tiny default settings, and the paper's setting with `--set online.nll_weight=0
--set online.num_samples=0`). For every α and checkpoint: tiny-world accuracy, mean ± std over
seeds, and `compare`'s paired-bootstrap 95% interval of the change against α = 0 on the
seed-averaged per-item scores. Prints a markdown table; writes the plot.

    python benchmarks/alpha_study.py SWEEP_DEFAULT SWEEP_PAPER [--png docs/alpha-study/alpha-study.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRIC = "tiny-world/accuracy"


def study(sweep: Path, checkpoints: list[str]) -> list[dict]:
    from selm_bench.harness.reports import compare as C

    summary = json.loads((sweep / "summary.json").read_text())
    alphas = json.loads((sweep / "sweep.json").read_text())["grid"]["online.alpha"]
    base = {ckpt: C.Side(f"alpha=0:{ckpt}", C.side_runs(sweep / "groups" / f"online.alpha={alphas[0]}"), ckpt)
            for ckpt in checkpoints}
    rows = []
    for a in alphas:
        for ckpt in checkpoints:
            s = next(r for r in summary if str(r["online.alpha"]) == a and r["checkpoint"] == ckpt)
            new = C.Side(f"alpha={a}:{ckpt}", C.side_runs(sweep / "groups" / f"online.alpha={a}"), ckpt)
            res = C.compare(base[ckpt], new, gated=[METRIC], seed=0, resamples=1000)
            m = next(m for c in res for m in c.metrics if f"{c.suite}/{m.metric}" == METRIC)
            rows.append({"alpha": a, "checkpoint": ckpt, "mean": s[METRIC], "std": s.get(f"{METRIC}_std"),
                         "n_seeds": s["n_seeds"], "delta": m.delta, "low": m.low, "high": m.high, "verdict": m.verdict})
    return rows


def baselines(sweep: Path) -> dict[str, tuple[float, float | None]]:
    summary = json.loads((sweep / "summary.json").read_text())
    return {r["checkpoint"]: (r[METRIC], r.get(f"{METRIC}_std")) for r in summary
            if r["checkpoint"] in ("sft", "dpo")}


def plot(studies: dict[str, list[dict]], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True)
    for col, (name, rows) in enumerate(studies.items()):
        top, bottom = axes[0][col], axes[1][col]
        for ckpt, style in (("selm/iter-1", "o--"), ("selm/iter-2", "s-")):
            pts = [r for r in rows if r["checkpoint"] == ckpt]
            xs = [float(r["alpha"]) for r in pts]
            top.errorbar(xs, [r["mean"] for r in pts], yerr=[r["std"] or 0 for r in pts], fmt=style, capsize=3, label=ckpt)
            bottom.errorbar(xs, [r["delta"] for r in pts], fmt=style, capsize=3, label=ckpt,
                            yerr=[[r["delta"] - r["low"] for r in pts], [r["high"] - r["delta"] for r in pts]])
        top.set_title(name)
        top.set_ylabel("accuracy (mean ± std, 3 seeds)")
        bottom.axhline(0, color="grey", lw=0.8)
        bottom.set_ylabel("Δ accuracy vs α = 0 (95% CI)")
        bottom.set_xlabel("online.alpha")
        for ax in (top, bottom):
            ax.set_xscale("symlog", linthresh=1e-3)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("default", type=Path)
    ap.add_argument("paper", type=Path)
    ap.add_argument("--png", type=Path, default=Path("docs/alpha-study/alpha-study.png"))
    args = ap.parse_args()
    checkpoints = ["selm/iter-1", "selm/iter-2"]
    studies = {"tiny default (nll_weight 1, 4 samples)": study(args.default, checkpoints),
               "paper setting (nll_weight 0, num_samples 0)": study(args.paper, checkpoints)}
    for (name, rows), sweep in zip(studies.items(), (args.default, args.paper)):
        base = baselines(sweep)
        print(f"\n**{name}** — sft {base['sft'][0]:.3f} ± {base['sft'][1] or 0:.3f}, "
              f"dpo {base['dpo'][0]:.3f} ± {base['dpo'][1] or 0:.3f}\n")
        print("| α | checkpoint | accuracy (mean ± std) | Δ vs α = 0 | 95% CI (paired bootstrap) | verdict |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['alpha']} | {r['checkpoint']} | {r['mean']:.3f} ± {r['std'] or 0:.3f} | {r['delta']:+.3f} "
                  f"| [{r['low']:+.3f}, {r['high']:+.3f}] | {r['verdict']} |")
    plot(studies, args.png)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
