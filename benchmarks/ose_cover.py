"""OSE's trimming and bounds, measured: how many candidates it keeps and evaluates as ε shrinks, and whether the best
W it can find is within 1 + ε of the optimum, against the paper's one-point-per-(p, i)-cell trimming.

For MiniLM-L6's and BERT-base's default grids (heads at the parent's width, every head count, hidden and FFN in
steps of 64), unconstrained and under a ≥3x FLOPs budget, and for each ε:

* kept: candidates in the ε-cover (`hf_bort.ose.epsilon_cover`, containment within 1 + ε in p and i);
* evaluated: candidates the branch-and-bound trains (`OSESearch.run()`'s rounds), with ê replaced by a known error
  that satisfies the assumption (`MONOTONE_ASSUMPTION`): the three shapes of `tests/test_ose_guarantee.py`;
* best / optimum: the best W among the evaluated (and among the paper's kept points, for comparison) over the
  brute-force optimum of the whole grid. The bound promises at most 1 + ε.

No model is trained: everything here is closed form, so the numbers are exact and repeat on any machine.

    PYTHONPATH=. python benchmarks/ose_cover.py [--out benchmarks/results/ose_cover] [--plot]
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from transformers import BertConfig

from hf_bort.ose import SearchSpace, epsilon_cover, inference_flops, parameter_count
from hf_bort.ose.search import MONOTONE_ASSUMPTION, _BranchAndBound


PARENTS = {
    "MiniLM-L6": BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
    "BERT-base": BertConfig(),
}
EPSILONS = (1.0, 0.5, 0.2, 0.1, 0.05)
SEQ_LEN = 128


def errors(space: SearchSpace) -> dict[str, np.ndarray]:
    """Errors that fall as any dimension grows (the assumption), of three kinds: in p only, in every dimension, and
    in depth then width at different rates (the shapes on which the (p, i) trimming kept 1.13x-1.61x the optimum)."""
    a = space.arrays()
    depth, heads, hidden, inter = (a[k].astype(float) for k in ("depth", "heads", "hidden", "intermediate"))
    p = parameter_count(space)
    return {
        "p only": (p.min() / p) ** 0.5,
        "every dimension": np.mean(
            [np.exp(-depth / 2), np.exp(-heads / 3), np.exp(-hidden / 150), np.exp(-inter / 400)], 0
        ),
        "depth, then width": np.exp(-depth / 2) + 0.05 * np.exp(-inter / 500),
    }


def paper_trimming(params: np.ndarray, cost: np.ndarray, epsilon: float) -> np.ndarray:
    """The paper's step 2, for comparison: one point per (⌊log_{1+ε} p⌋, ⌊log_{1+ε} i⌋) cell, its largest member."""
    order = np.lexsort((cost, params))
    base = math.log1p(epsilon)
    cell_p = np.floor(np.log(params[order] / params.min()) / base + 1e-9).astype(np.int64)
    cell_i = np.floor(np.log(cost[order] / cost.min()) / base + 1e-9).astype(np.int64)
    keys = cell_p * (int(cell_i.max()) + 1) + cell_i
    _, last = np.unique(keys[::-1], return_index=True)
    return order[np.sort(len(keys) - 1 - last)]


def measure(space: SearchSpace, budget: float | None) -> list[dict]:
    params, flops = parameter_count(space), inference_flops(space, SEQ_LEN)
    a = space.arrays()
    dims = np.stack([a[k] for k in ("depth", "heads", "hidden", "intermediate", "head_dim")], axis=1)
    feasible = np.arange(len(space)) if budget is None else np.flatnonzero(flops <= flops.max() / budget)
    rows = []
    for epsilon in EPSILONS:
        start = time.perf_counter()
        kept = feasible[epsilon_cover(dims[feasible], params[feasible], flops[feasible], epsilon)]
        seconds = time.perf_counter() - start
        paper = feasible[paper_trimming(params[feasible], flops[feasible], epsilon)]
        row = {"epsilon": epsilon, "feasible": len(feasible), "kept": len(kept), "paper_kept": len(paper)}
        row["cover_seconds"] = round(seconds, 2)
        cost_ratio = np.maximum(params / params.max(), flops / flops.max())
        for name, error in errors(space).items():
            w = np.maximum(cost_ratio, error)
            optimum = w[feasible].min()
            bounds = _BranchAndBound(dims[kept], cost_ratio[kept], 1.0, True, 4)
            evaluated = {}
            while batch := bounds.next_round(evaluated, None):
                evaluated.update({k: float(error[kept[k]]) for k in batch})
            row[name] = {
                "evaluated": len(evaluated),
                "best_over_optimum": float(min(w[kept[k]] for k in evaluated) / optimum),
                "paper_best_over_optimum": float(w[paper].min() / optimum),
            }
        rows.append(row)
    return rows


def table(parent: str, budget: float | None, size: int, rows: list[dict]) -> str:
    names = list(rows[0])[5:]
    title = f"{parent}, {size:,} candidates" + (
        f", >= {budget:g}x fewer FLOPs ({rows[0]['feasible']:,} meet it)" if budget else ""
    )
    header = (
        "| ε | kept (cover) | paper's kept | "
        + " | ".join(f"{n}: evaluated, best/opt (paper's)" for n in names)
        + " |"
    )
    lines = [f"**{title}**", "", header, "|" + "---|" * (3 + len(names))]
    for row in rows:
        cells = [
            f"{row[n]['evaluated']}, {row[n]['best_over_optimum']:.3f} ({row[n]['paper_best_over_optimum']:.3f})"
            for n in names
        ]
        lines.append(f"| {row['epsilon']} | {row['kept']:,} | {row['paper_kept']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (parent, budget), rows in results.items():
        label = parent + (f", >={budget:g}x" if budget else "")
        inverse = [1 / r["epsilon"] for r in rows]
        line = ax.plot(inverse, [r["kept"] for r in rows], "o-", label=f"{label}: kept")[0]
        evaluated = [max(r[n]["evaluated"] for n in list(r)[5:]) for r in rows]
        ax.plot(inverse, evaluated, "s--", color=line.get_color(), label=f"{label}: evaluated (most of 3 errors)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("1 / ε")
    ax.set_ylabel("candidates")
    ax.set_title("OSE: ε-cover size and candidates trained, by ε")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Folder for ose_cover.json, .md (and .png).")
    parser.add_argument("--plot", action="store_true")
    args = parser.parse_args()
    results, text = (
        {},
        [f"Assumption: {MONOTONE_ASSUMPTION}. FLOPs at {SEQ_LEN} tokens as i; W with unit weights.", ""],
    )
    for parent, config in PARENTS.items():
        space = SearchSpace.from_config(config)
        for budget in (None, 3.0):
            rows = measure(space, budget)
            results[(parent, budget)] = rows
            text += [table(parent, budget, len(space), rows), ""]
            print(text[-2], "\n", flush=True)
    worst = max(
        r[n]["best_over_optimum"] / (1 + r["epsilon"]) for rows in results.values() for r in rows for n in list(r)[5:]
    )
    text.append(f"Largest best/optimum as a share of 1 + ε, over every row: {worst:.3f} (the bound holds when <= 1).")
    print(text[-1])
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ose_cover.json").write_text(
            json.dumps([{"parent": p, "budget": b, "rows": rows} for (p, b), rows in results.items()], indent=1)
        )
        (args.out / "ose_cover.md").write_text("\n".join(text) + "\n")
        if args.plot:
            plot(results, args.out / "ose_cover.png")


if __name__ == "__main__":
    main()
