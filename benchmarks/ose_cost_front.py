"""OSE cost-only front over BERT-large's full grid, and where the released Bort <4, 8, 1024, 768> lies.

Target: p and i for every candidate (D 1..24, A 1..16 at width 64, H and I in steps of 64) and the non-dominated set
in (p, i) in under 10 s on a 2-core CPU. Printed side by side with a per-candidate Python loop over the same
closed forms (timed on a sample and extrapolated), so the vectorisation's gain is a ratio, not a claim.

    PYTHONPATH=. python benchmarks/ose_cost_front.py [--seq-len 128]
"""

import argparse
import time

import numpy as np
from transformers import BertConfig

from hf_bort.ose import Architecture, SearchSpace, epsilon_cover, inference_flops, parameter_count, pareto_front
from hf_bort.ose.costs import costs_of
from hf_bort.ose.result import RELEASED_BORT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--loop-sample", type=int, default=500)
    args = parser.parse_args()

    config = BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
    start = time.perf_counter()
    space = SearchSpace.from_config(config)
    params, flops = parameter_count(space), inference_flops(space, args.seq_len)
    front = pareto_front(np.stack([params, flops], axis=1))
    vectorised = time.perf_counter() - start

    sample = np.random.default_rng(0).choice(len(space), size=args.loop_sample, replace=False)
    start = time.perf_counter()
    for index in sample:
        costs_of(space, space[int(index)], args.seq_len)
    loop = (time.perf_counter() - start) / args.loop_sample * len(space)

    print(f"BERT-large grid: {len(space)} candidates, parent {space.parent_architecture}")
    print(f"{'':32}{'vectorised':>12}{'python loop':>14}{'ratio':>8}")
    print(
        f"{'costs + (p, i) front, seconds':32}{vectorised:12.3f}{loop:14.1f}{loop / vectorised:8.0f}x  (target < 10 s)"
    )

    bort_p, bort_i = costs_of(space, RELEASED_BORT, args.seq_len)
    print(
        f"\nReleased Bort {RELEASED_BORT}: p = {bort_p / 1e6:.2f}M, i = {bort_i / 1e9:.2f} GFLOPs at {args.seq_len} tokens"
    )
    front_archs = [space[int(k)] for k in front]
    on_front = RELEASED_BORT in front_archs
    print(f"cost-only front in (p, i): {len(front)} point(s): {', '.join(map(str, front_archs[:5]))}")
    if on_front:
        print("Bort is on the cost-only front.")
    else:
        k = next(k for k in front if params[k] <= bort_p and flops[k] <= bort_i)
        print(
            f"Bort is dominated by the returned {space[int(k)]} (p {params[k] / bort_p:.4f}x, i {flops[k] / bort_i:.4f}x "
            "of Bort's): p and i do not conflict, so the cost-only front of a full grid is its smallest corner."
        )
    # The released Bort's 8 heads are 128 wide, twice RoBERTa-large's: outside the grid of heads at the parent's
    # width. Its cost twin there keeps all 16 heads of width 64 (the same parameters).
    twin = Architecture(4, 16, 1024, 768, 64)
    twin_p, twin_i = costs_of(space, twin, args.seq_len)
    print(f"\nIn the grid, Bort's cost twin {twin}: p {twin_p / bort_p:.4f}x, i {twin_i / bort_i:.4f}x of Bort's")
    print("ε-cover (step 2 of the FPTAS): the kept candidate that contains the twin within 1 + ε in p and i")
    print(f"{'ε':>6}{'kept':>8}  {'twin kept?':<11}{'covering candidate':<38}{'p ratio':>9}{'i ratio':>9}")
    dims = np.stack([space.arrays()[d] for d in ("depth", "heads", "hidden", "intermediate", "head_dim")], axis=1)
    twin_dims = np.array([twin.depth, twin.heads, twin.hidden, twin.intermediate, 64])
    for eps in (1.0, 0.5, 0.2, 0.1, 0.05):
        kept = epsilon_cover(dims, params, flops, eps)
        covers = kept[
            (dims[kept] >= twin_dims).all(1)
            & (params[kept] <= (1 + eps) * twin_p * (1 + 1e-12))
            & (flops[kept] <= (1 + eps) * twin_i * (1 + 1e-12))
        ]
        rep = space[int(covers[np.argmin(params[covers])])]
        rp, ri = costs_of(space, rep, args.seq_len)
        print(f"{eps:6.2f}{len(kept):8d}  {str(rep == twin):<11}{str(rep):<38}{rp / twin_p:9.3f}{ri / twin_i:9.3f}")


if __name__ == "__main__":
    main()
