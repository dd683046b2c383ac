"""How stable are the timing decisions of compress's search? (issue #22: two runs of the same MRPC >=3x search, code
unchanged, shipped different students: one measured 8 candidates too slow, the other 25.)

    OMP_NUM_THREADS=1 python benchmarks/search_timing_stability.py --task mrpc --budget 3 --fits 3 --rounds 3 \
        --cache-dir /path/cache --output-dir benchmarks/results/search_timing

Run it alone: it is a timing study. The search makes two timing decisions before it trains anything, and this
repeats each of them as the search makes it, on the leaderboard's compress run for this task and budget:

1. **Prediction** (`OSESearch._predicted_speed`): a `LatencyModel` fitted on `--fit-samples` uniform candidates and
   the parent's latency, each timed on its own, predict every candidate's speed-up, scaled (with
   `--calibration-probes` above 0) by the median measured/predicted ratio of that many candidates nearest the limit,
   timed as in 2; those under min_speedup x margin are cut before the epsilon-cover. Repeated `--fits` times: how far
   the predicted speed-ups and the kept set move between fits.
2. **Measurement** (`OSESearch._measured_to_fail`): each candidate about to be trained is built with its per-layer
   sizes and timed alternately with the parent at batch 1 and 8; under min_speedup x margin, it is not trained.
   Repeated `--rounds` times on the kept candidates predicted within `--band` of the threshold, round-robin, so
   every round sees the machine alike: how often a candidate's verdict changes, and how far measured speed-ups sit
   from predicted ones.

3. **The whole search and the choice**, `--searches` times (compress's `search.run()` and `choose_under_budget`, no
   journal): how many candidates each run measured too slow, and which student each would ship.

Written: `timing-<task>-<budget>x.json` (every number) and `.md` (the summary).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.compress_fidelity import compress_folder, the_search_config  # noqa: E402
from benchmarks.leaderboard import Leaderboard, Settings, log  # noqa: E402
from hf_bort import compress_search  # noqa: E402
from hf_bort.ose.costs import inference_flops, parameter_count  # noqa: E402
from hf_bort.ose.search import epsilon_cover, ose_state  # noqa: E402
from hf_bort.ose.selection import choose_under_budget  # noqa: E402


def repeated_searches(new_search, parent, config, runs: int) -> list[dict]:
    """`runs` whole searches, each with compress's choice: what each measured too slow, and the student it ships."""
    searches = []
    for run in range(runs):
        started = time.perf_counter()
        result = new_search().run()
        choice = choose_under_budget(
            result, parent, config.min_speedup, repeats=config.latency_repeats, margin=config.selection_margin
        )
        searches.append({
            "measured_infeasible": result.guarantee["measured_infeasible"],
            "chosen": choice.record.architecture.as_dict(),
            "chosen_error": choice.record.error,
            "chosen_speedup": choice.speedup["speedup"],
            "evaluated": [r.architecture.as_dict() for r in result.records],
            "calibration": result.guarantee.get("latency_calibration"),
            "seconds": time.perf_counter() - started,
        })  # fmt: skip
        log(f"search {run}: {searches[-1]['measured_infeasible']} measured too slow, chose {choice.record.architecture}"
            f" (ê {choice.record.error:.3f}, {choice.speedup['speedup']:.2f}x), {searches[-1]['seconds']:.0f} s")  # fmt: skip
    return searches


def repeated_predictions(search, args) -> tuple[dict, list[dict]]:
    """Steps 1 and 2: `args.fits` predictions (`OSESearch._predicted_speed`), then `args.rounds` timings of the kept
    candidates predicted nearest the threshold, round-robin."""
    threshold = search.args.constraints()["min_speedup"]
    params, flops = parameter_count(search.space), inference_flops(search.space, search.args.seq_len)
    dims = search._dims()
    fits = []
    for fit in range(args.fits):
        started = time.perf_counter()
        _, speedups, parent_ms = search._predicted_speed(ose_state())
        feasible = np.flatnonzero(speedups >= threshold)
        kept = feasible[epsilon_cover(dims[feasible], params[feasible], flops[feasible], search.args.epsilon)]
        factor = search.latency_calibration["speedup_factor"] if search.latency_calibration else None
        fits.append({"speedups": speedups, "parent_ms": parent_ms, "speedup_factor": factor, "kept": kept})
        log(f"fit {fit}: parent {parent_ms:.2f} ms, {len(feasible)} feasible, {len(kept)} kept, calibration "
            f"{factor}, {time.perf_counter() - started:.0f} s")  # fmt: skip
    kept_sets = [set(f["kept"].tolist()) for f in fits]
    mean_prediction = np.mean([f["speedups"] for f in fits], axis=0)

    # the kept candidates of the first fit near the threshold, closest first
    near = [int(i) for i in fits[0]["kept"] if args.band[0] <= mean_prediction[i] / threshold <= args.band[1]]
    near = sorted(near, key=lambda i: abs(mean_prediction[i] / threshold - 1))[: args.max_candidates]
    candidates = search._as_built(near)
    rounds = []
    for r in range(args.rounds):
        started = time.perf_counter()
        timings, parent_ms = search._time_candidates(
            candidates, sizes=search.args.latency_batch_sizes, stop_early=False
        )
        rounds.append([speedup for _, speedup in timings])
        log(
            f"round {r}: {len(candidates)} candidates, parent {parent_ms:.2f} ms, {time.perf_counter() - started:.0f} s"
        )

    rows = []
    for position, index in enumerate(near):
        measured = [rounds[r][position] for r in range(args.rounds)]
        verdicts = [m >= threshold for m in measured]
        rows.append({
            "architecture": search.space[index].as_dict(),
            "allocation": candidates[position][1],
            "predicted": [float(f["speedups"][index]) for f in fits],
            "measured": measured,
            "kept_in_fits": sum(index in s for s in kept_sets),
            "verdict_changes": len(set(verdicts)) > 1,
            "passes": sum(verdicts),
        })  # fmt: skip

    def spread(values):
        return statistics.pstdev(values) / statistics.mean(values)

    summary = {
        "kept": [len(s) for s in kept_sets],
        "kept_in_every_fit": len(set.intersection(*kept_sets)),
        "kept_in_any_fit": len(set.union(*kept_sets)),
        "parent_ms_per_fit": [f["parent_ms"] for f in fits],
        "speedup_factor_per_fit": [f["speedup_factor"] for f in fits],
        "predicted_spread_median": float(np.median([spread(r["predicted"]) for r in rows])),
        "measured_spread_median": float(np.median([spread(r["measured"]) for r in rows])),
        "measured_over_predicted_median": float(
            np.median([statistics.mean(r["measured"]) / statistics.mean(r["predicted"]) for r in rows])
        ),
        "candidates_timed": len(rows),
        "predicted_to_pass_measured_to_fail_every_round": sum(
            r["passes"] == 0 and statistics.mean(r["predicted"]) >= threshold for r in rows
        ),
        "verdict_changes": sum(r["verdict_changes"] for r in rows),
    }
    return summary, rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mrpc")
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--fits", type=int, default=3, help="0: no step 1 or 2 (e.g. on code without them).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--band", nargs=2, type=float, default=[0.9, 1.25], help="Of the threshold, predicted.")
    parser.add_argument("--max-candidates", type=int, default=30)
    parser.add_argument("--fit-samples", type=int, default=24, help="OSEConfig.latency_fit_samples.")
    parser.add_argument("--calibration-probes", type=int, default=8, help="OSEConfig.latency_calibration_probes.")
    parser.add_argument("--searches", type=int, default=0, help="Whole searches (and choices) to run.")
    parser.add_argument("--cache-dir", type=Path, required=True, help="The leaderboard's cache (its compress runs).")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    settings = dataclasses.replace(Settings(), tasks=(args.task,), budgets=(args.budget,))
    board = Leaderboard(settings, args.cache_dir, args.output_dir)
    folder = compress_folder(board, args.task, args.budget)
    parent = board.parent_model(args.task, 0)
    config = the_search_config(folder)

    def new_search():
        search = compress_search(parent, board.task(args.task).train_rows, config, board.tokenizer, journal=False)
        if args.fits:  # code before the calibration has neither setting
            search.args.latency_fit_samples = args.fit_samples
            search.args.latency_calibration_probes = args.calibration_probes
        return search

    searches = repeated_searches(new_search, parent, config, args.searches)
    search = new_search()
    threshold = search.args.constraints()["min_speedup"]
    summary, rows = repeated_predictions(search, args) if args.fits else ({}, [])
    summary = {
        "threshold": threshold,
        **{k: getattr(args, k) for k in ("fits", "rounds", "fit_samples", "calibration_probes")},
        **summary,
        "searches": [{k: v for k, v in run.items() if k not in ("evaluated", "calibration")} for run in searches],
    }
    lines = [
        f"# The search's timing decisions, repeated: {args.task} >={args.budget:g}x (threshold {threshold:.2f}x)",
        "",
        *(f"- {key}: {value}" for key, value in summary.items()),
        "",
        "| candidate | predicted (per fit) | measured (per round) | verdicts passed |",
        "|---|---|---|---|",
        *(
            f"| {r['architecture']} | {', '.join(f'{v:.2f}' for v in r['predicted'])} | "
            f"{', '.join(f'{v:.2f}' for v in r['measured'])} | {r['passes']}/{args.rounds} |"
            for r in rows
        ),
    ]
    table = "\n".join(lines)
    print(table)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"timing-{args.task}-{args.budget:g}x"
    stem.with_suffix(".md").write_text(table + "\n")
    stem.with_suffix(".json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                     "summary": summary, "rows": rows,
                                                     "searches": searches}, indent=1))  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
