"""Heads in OSE's ε-trimming on BERT-large's grid, with latency as i: is the released Bort <4, 8, 1024, 768> kept?

The latency model is fitted on this machine on a sample of BERT-large's grid restricted to depth <= `--fit-depth`
(candidates with 24 layers of width 1024 take too long to build and time on a shared 2-core CPU); its features are
per-layer FLOP parts and the layer count, so the fit extends linearly in depth. `--synthetic` uses the documented
synthetic coefficients of `tests/test_ose_constraints.py` instead, with no timing at all.

For each ε it prints the kept-set size and the share of max-heads points under the paper's rule (one point per
(p, i) cell), with every head count as a key, and under hf_bort's rule (the head count is a key where the (D, H, I)
siblings' latencies span more than 1 + ε; see `epsilon_buckets`), whether Bort is kept, and otherwise the kept point
that ε-covers it (p and i each within 1 + ε, same key).

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python benchmarks/ose_heads.py [--fit-depth 2 --samples 16]
"""

import argparse
import time

import numpy as np
import torch
from transformers import AutoModel, BertConfig

from hf_bort.ose import LatencyModel, SearchSpace, epsilon_buckets, measure_latency_ms, parameter_count
from hf_bort.ose.result import RELEASED_BORT
from hf_bort.ose.search import _head_keys


SYNTHETIC = dict(coefficients=[0.5, 2e-8, 4e-7, 0.0, 5e-8, 0.05], holdout_error=0.0, n_fitted=0, n_holdout=0)


def _cover(space, kept, p, cost, key, target: int, eps: float) -> str:
    """The kept point closest to `target` among those within 1 + ε of it in p and i (and with its key, if any)."""
    close = (np.abs(np.log(p[kept] / p[target])) <= np.log1p(eps) + 1e-9) & (
        np.abs(np.log(cost[kept] / cost[target])) <= np.log1p(eps) + 1e-9
    )
    if key is not None:
        close &= key[kept] == key[target]
    if not close.any():
        return "none (guarantee broken)"
    candidates = kept[close]
    k = int(
        candidates[
            np.argmin(np.abs(np.log(p[candidates] / p[target])) + np.abs(np.log(cost[candidates] / cost[target])))
        ]
    )
    return f"{space[k]} (p {p[k] / p[target]:.3f}x, i {cost[k] / cost[target]:.3f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--fit-depth", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--synthetic", action="store_true")
    parser.add_argument(
        "--measure-bort", action="store_true", help="also time Bort's head variants with measure_latency_ms"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    space = SearchSpace.from_config(config)
    if args.synthetic:
        model = LatencyModel(seq_len=args.seq_len, batch_size=1, **SYNTHETIC)
        print("latency model: synthetic (documented coefficients, no timing)")
    else:
        fit_space = SearchSpace.from_config(config, depths=list(range(1, args.fit_depth + 1)))
        start = time.perf_counter()
        model = LatencyModel.fit(fit_space, n_samples=args.samples, seq_len=args.seq_len, repeats=3)
        print(
            f"latency model: fitted on {model.n_fitted} candidates of depth <= {args.fit_depth} in "
            f"{time.perf_counter() - start:.0f} s ({args.threads} thread(s), batch 1 x {args.seq_len}); held-out "
            f"MAPE {model.holdout_error:.1%} on {model.n_holdout}; coefficients {model.coefficients}"
        )
    p, latency, heads = parameter_count(space), model.predict(space), space.arrays()["heads"]
    bort = next(k for k in range(len(space)) if space[k] == RELEASED_BORT)
    siblings = [
        k
        for k in range(len(space))
        if space[k].depth == 4 and space[k].hidden == 1024 and space[k].intermediate == 768
    ]
    print(
        f"BERT-large grid: {len(space)} candidates. Bort {RELEASED_BORT}: p {p[bort] / 1e6:.2f}M, {latency[bort]:.2f} ms"
    )
    print(
        "Bort's head variants <4, A, 1024, 768>: "
        + ", ".join(f"A={space[k].heads} {latency[k]:.2f} ms" for k in siblings)
    )
    if args.measure_bort:
        measured = {}
        for k in siblings:
            bert = AutoModel.from_config(space.to_config(space[k]))
            measured[space[k].heads] = measure_latency_ms(bert, 1, args.seq_len, threads=args.threads, repeats=3)
        print(
            "measured (measure_latency_ms, 3 repeats): "
            + ", ".join(f"A={a} {ms:.1f} ms" for a, ms in measured.items())
            + f"; spread {max(measured.values()) / min(measured.values()):.2f}x"
        )
    max_heads = heads == space.parent_architecture.heads
    print(f"\n{'ε':>5} {'rule':<16}{'kept':>7}{'max-heads':>10}  {'Bort kept?':<11}covered by")
    for eps in (0.5, 0.2, 0.1):
        rules = (("paper (p, i)", None), ("every A", heads), ("hf_bort", _head_keys(space, latency, eps)))
        for rule, key in rules:
            kept = epsilon_buckets(p, latency, eps, heads=key)
            is_kept = bort in set(kept.tolist())
            cover = "-" if is_kept else _cover(space, kept, p, latency, key, bort, eps)
            print(f"{eps:5.2f} {rule:<16}{len(kept):7d}{max_heads[kept].mean():10.1%}  {str(is_kept):<11}{cover}")


if __name__ == "__main__":
    main()
