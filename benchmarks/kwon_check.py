"""One Kwon et al. cell without the leaderboard's post-compression training: `compress_kwon` on the leaderboard's
fine-tuned parent, then the pruned model's shapes, its measured speed-up and its score on the official dev set right
after pruning (no retraining), with the wall time. Writes the JSON to --output.

    KWON_ROWS=256 OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/kwon_check.py --task sst2 --budget 3 \
        --cache-dir /work/cache/kwon --output benchmarks/results/leaderboard/kwon_sst2_3x.json
"""

import argparse
import json
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

import leaderboard as lb  # noqa: E402
from leaderboard_kwon import KWON_ROWS, compress_kwon  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2", choices=sorted(lb.TASK_METRIC))
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    settings = lb.Settings(tasks=(args.task,), budgets=(args.budget,), seeds=(0,), methods=("parent",))
    board = lb.Leaderboard(settings, args.cache_dir, args.cache_dir / "out")
    data = board.task(args.task)
    parent = board.parent_model(args.task, 0)
    parent_score = lb.score(parent, data.dev)
    start = time.perf_counter()
    model, info = compress_kwon(board, args.budget, args.task)
    wall = time.perf_counter() - start
    pruned_score = lb.score(model, data.dev)
    latency, ratio = board.timed(model)
    result = {
        "task": args.task,
        "budget": args.budget,
        "search_rows": KWON_ROWS,
        "dev_rows": len(data.dev["labels"]),
        "parent": parent_score,
        "pruned_no_retraining": pruned_score,
        "share_of_parent_accuracy": pruned_score["accuracy"] / parent_score["accuracy"],
        "shapes": lb.model_shapes(model),
        "params": lb.count_params(model),
        "parent_params": lb.count_params(parent),
        "latency_ms": latency,
        "speedup": ratio,
        "compress_wall_seconds": wall,
        "info": info,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "info"}, indent=1))


if __name__ == "__main__":
    main()
