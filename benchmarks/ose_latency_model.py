"""How well a latency model fitted on a few timed candidates predicts the others, on this machine.

Times `--samples` random candidates of a parent's OSE space (random weights, batch 1, `--seq-len` tokens), fits
`LatencyModel` on most of them and prints its mean absolute percentage error on the held-out rest, and how closely
its ranking of the whole space follows the closed-form FLOPs i(ξ) it would replace.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/ose_latency_model.py --model PATH_OR_ID
"""

import argparse
import time

import numpy as np
import torch
from transformers import AutoConfig

from hf_bort.ose import LatencyModel, SearchSpace, inference_flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    space = SearchSpace.from_config(AutoConfig.from_pretrained(args.model))
    start = time.perf_counter()
    model = LatencyModel.fit(space, n_samples=args.samples, seq_len=args.seq_len)
    print(
        f"{len(space)} candidates; timed {args.samples} in {time.perf_counter() - start:.1f} s ({args.threads} thread(s))"
    )
    print(f"latency model: fitted on {model.n_fitted}, held-out MAPE {model.holdout_error:.1%} on {model.n_holdout}")
    predicted, flops = model.predict(space), inference_flops(space, args.seq_len)
    print(f"predicted latency over the space: {predicted.min():.2f} .. {predicted.max():.2f} ms")
    print(
        f"rank correlation latency model vs FLOPs over the space: {np.corrcoef(predicted.argsort().argsort(), flops.argsort().argsort())[0, 1]:.3f}"
    )


if __name__ == "__main__":
    main()
