"""Does `hf_bort.compress`'s ê rank its candidates the way their trained scores do? (the task path's fidelity)

    OMP_NUM_THREADS=1 python benchmarks/compress_fidelity.py --task sst2 --budget 6 --compress-revision 3 \
        --cache-dir /path/cache --output-dir benchmarks/results/compress_fidelity --variant "check=seed=0" \
        --variant "lr3e-4=search_learning_rate=3e-4" \
        --variant "lr3e-4 b32=search_learning_rate=3e-4,search_batch_size=32" \
        --variant "lr3e-4 b32 41 steps=search_learning_rate=3e-4,search_batch_size=32,step_scale=45"

Candidates: those compress's search trained for the leaderboard's hf_bort cell at this task and budget (its journal
in the leaderboard's `--cache-dir`; run the leaderboard's hf_bort cell first). Each is extracted exactly as the
search built it (`compress_search(...).extract`: in one cut, even where compress adds its gradual step, which would
cost an epoch per candidate; ê ranks the one-cut candidates it was estimated on), then given the leaderboard's one post-compression training (KD from
the fine-tuned parent, 0.5 CE + 0.5 T² KL, 3,000 rows, 2 epochs, lr 3e-4: `benchmarks.leaderboard.finetune`) and
scored on the official dev set, per seed. ê is read twice over: as the search ran (its journal) and under each
`--variant`'s CompressConfig fields (`compress_search(...).estimate`, on the same held-out rows of the same split).

Printed and written (`fidelity-<task>-<budget>x.json/.md/.png`): every candidate's shape, parameters, FLOPs,
trained score and ê per variant, then Kendall τ-b and Spearman ρ between -ê and the trained score per variant,
next to "more parameters is better" and "more FLOPs is better". Issue #22's goal: τ ≥ 0.6 and above both.

Trained scores and estimates are cached under `<cache-dir>/fidelity/` (a rerun resumes; `--report-only` trains
nothing and prints what is cached).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from scipy import stats


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.leaderboard import (  # noqa: E402
    QUICK,
    Leaderboard,
    Settings,
    bert_form,
    count_params,
    finetune,
    log,
    model_shapes,
    score,
    shape_text,
    task_metric,
)
from hf_bort import Architecture, CompressConfig, compress_search  # noqa: E402


JOURNAL = "as the search ran"


def parse_variant(text: str) -> tuple[str, dict]:
    """'name=field=value,field=value' -> (name, {field: value}), values typed as CompressConfig's fields are."""
    name, _, assignments = text.partition("=")
    types = {f.name: f.type for f in dataclasses.fields(CompressConfig)}
    overrides = {}
    for assignment in filter(None, assignments.split(",")):
        field, _, value = assignment.partition("=")
        if field not in types:
            raise SystemExit(f"--variant {text!r}: {field!r} is not a CompressConfig field; e.g. step_scale=30")
        overrides[field] = int(value) if types[field] == "int" else float(value)
    if not name or not overrides:
        raise SystemExit(f"--variant {text!r}: write NAME=field=value[,field=value...], e.g. 'long=step_scale=30'")
    return name, overrides


def compress_folder(board: Leaderboard, task: str, budget: float) -> Path:
    s = board.settings
    folder = board.cache / "compress" / f"{task}-{budget:g}x-{s.key(task)}-{s.compression_key()}"
    if not (folder / "run_args.json").exists():
        raise SystemExit(
            f"No compress run at {folder}: run the leaderboard's hf_bort cell first "
            f"(benchmarks/leaderboard.py --tasks {task} --budgets {budget:g} --methods parent hf_bort)."
        )
    return folder


def the_search_config(folder: Path) -> CompressConfig:
    """The CompressConfig the leaderboard ran: its recorded settings, and the short runs' rate and batch as the search
    itself recorded them (runs of compress revision 3 predate those two CompressConfig fields)."""
    settings = json.loads((folder / "run_args.json").read_text())["settings"]
    search = json.loads((folder / "ose" / "search.json").read_text())["settings"]
    settings.update(search_learning_rate=search["learning_rate"], search_batch_size=search["batch_size"])
    fields = {f.name for f in dataclasses.fields(CompressConfig)}
    return CompressConfig(output_dir=str(folder), **{k: v for k, v in settings.items() if k in fields})


def journal_records(folder: Path) -> list[dict]:
    records = []
    for path in sorted((folder / "ose").glob("candidates-*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def candidate_id(architecture: dict) -> str:
    a = architecture
    return f"D{a['depth']}-A{a['heads']}-H{a['hidden']}-I{a['intermediate']}-d{a.get('head_dim')}"


def cached(path: Path, make):
    if path.exists():
        return json.loads(path.read_text())
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))
    return value


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--budget", type=float, default=6.0)
    parser.add_argument("--cache-dir", type=Path, required=True, help="The leaderboard's cache (its compress runs).")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--variant", action="append", default=[], help="NAME=field=value,... of CompressConfig.")
    parser.add_argument("--report-only", action="store_true", help="Train nothing; report what is cached.")
    parser.add_argument(
        "--only",
        nargs="*",
        default=[],
        help="Train only these candidates (e.g. D6-A4-H384-I192-d32), e.g. on more seeds.",
    )
    parser.add_argument("--quick", action="store_true", help="Read `benchmarks/leaderboard.py --quick`'s run.")
    parser.add_argument(
        "--compress-revision", type=int, default=Settings.compress_revision, help="Whose compress run to read."
    )
    args = parser.parse_args(argv)
    variants = dict(parse_variant(text) for text in args.variant)
    torch.set_num_threads(1)

    settings = dataclasses.replace(
        QUICK if args.quick else Settings(),
        tasks=(args.task,),
        budgets=(args.budget,),
        seeds=tuple(args.seeds),
        compress_revision=args.compress_revision,
    )
    board = Leaderboard(settings, args.cache_dir, args.output_dir)
    folder = compress_folder(board, args.task, args.budget)
    records = journal_records(folder)
    data = board.task(args.task)
    parent = board.parent_model(args.task, 0)
    config = the_search_config(folder)
    search = compress_search(parent, data.train_rows, config, board.tokenizer, journal=False)
    work = args.cache_dir / "fidelity" / folder.name  # per compress run: its candidates, extraction and settings
    metric = task_metric(args.task)

    rows = []
    for number, record in enumerate(records, 1):
        arch = Architecture(**record["architecture"])
        ident = candidate_id(record["architecture"])
        row = {
            "candidate": ident,
            "params": record["params"],
            "flops": record["inference_cost"],
            "error": {JOURNAL: record["error"]},
            "scores": [],
        }
        for seed in args.seeds if not args.only or ident in args.only else ():
            path = work / f"{ident}-seed{seed}.json"
            if args.report_only and not path.exists():
                continue

            def train(arch=arch, seed=seed):
                started = time.perf_counter()
                model = bert_form(search.extract(arch), board.base_config)
                shapes = model_shapes(model)
                finetune(model, data, settings, seed, board.teacher_logits(args.task))
                return {**score(model, data.dev, args.task), "shape": shape_text(shapes),
                        "params": count_params(model), "seconds": time.perf_counter() - started}  # fmt: skip

            result = cached(path, train)
            row["scores"].append(result[metric])
            row["shape"] = result["shape"]
            log(f"[{number}/{len(records)}] {ident} seed {seed}: {metric} {result[metric]:.4f} ({result['shape']})")
        rows.append(row)

    for name, overrides in variants.items():
        path = work / f"estimate-{json.dumps(overrides, sort_keys=True)}.json"
        if args.report_only and not path.exists():
            continue

        def estimate(overrides=overrides):
            variant = compress_search(
                parent, data.train_rows, dataclasses.replace(config, **overrides), board.tokenizer, journal=False
            )
            started = time.perf_counter()
            found = variant.estimate([Architecture(**r["architecture"]) for r in records])
            return {
                "errors": [r.error for r in found],
                "steps": variant.steps,
                "seconds": time.perf_counter() - started,
            }

        found = cached(path, estimate)
        log(f"variant {name}: {found['steps']} steps, {found['seconds']:.0f} s for {len(records)} candidates")
        for row, error in zip(rows, found["errors"]):
            row["error"][name] = error

    report = summarise(rows, [JOURNAL, *variants], metric)
    report.update(task=args.task, budget=args.budget, seeds=args.seeds, variants=variants, journal=str(folder))
    write(report, args.output_dir / "-".join([f"fidelity-{args.task}-{args.budget:g}x", *args.only]))
    return report


def rank_agreement(predicted: list[float], truth: list[float]) -> dict:
    """Kendall τ-b and Spearman ρ between a prediction (higher = predicted better) and the trained score."""
    return {
        "kendall_tau": float(stats.kendalltau(predicted, truth).statistic),
        "spearman_rho": float(stats.spearmanr(predicted, truth).statistic),
    }


def summarise(rows: list[dict], estimates: list[str], metric: str) -> dict:
    trained = [row for row in rows if row["scores"]]
    truth = [statistics.mean(row["scores"]) for row in trained]
    rankings = {}
    if len(trained) >= 3:
        for name in estimates:
            if all(name in row["error"] for row in trained):
                rankings[f"-ê ({name})"] = rank_agreement([-row["error"][name] for row in trained], truth)
        rankings["parameters"] = rank_agreement([row["params"] for row in trained], truth)
        rankings["FLOPs"] = rank_agreement([row["flops"] for row in trained], truth)
    return {"metric": metric, "rows": rows, "rankings": rankings, "trained": len(trained)}


def write(report: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1))
    names = list(dict.fromkeys(name for row in report["rows"] for name in row["error"]))
    lines = [
        f"# compress's ê against trained {report['metric']}: {report['task']}, ≥{report['budget']:g}x "
        f"({report['trained']} candidates trained, seeds {report['seeds']})",
        "",
        "| candidate | shape | params | MFLOPs | " + " | ".join(f"ê {n}" for n in names) + f" | {report['metric']} |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for row in sorted(report["rows"], key=lambda r: -statistics.mean(r["scores"]) if r["scores"] else 0):
        errors = " | ".join(f"{row['error'][n]:.4f}" if n in row["error"] else "" for n in names)
        trained = f"{statistics.mean(row['scores']):.4f}" if row["scores"] else "not trained"
        lines.append(f"| {row['candidate']} | {row.get('shape', '')} | {row['params']:,.0f} | "
                     f"{row['flops'] / 1e6:,.0f} | {errors} | {trained} |")  # fmt: skip
    lines += ["", "| ranking by | Kendall τ-b | Spearman ρ |", "|---|---|---|"]
    for name, agreement in report["rankings"].items():
        lines.append(f"| {name} | {agreement['kendall_tau']:.3f} | {agreement['spearman_rho']:.3f} |")
    text = "\n".join(lines) + "\n"
    stem.with_suffix(".md").write_text(text)
    print(text)
    plot(report, stem.with_suffix(".png"), names)


def plot(report: dict, path: Path, names: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [row for row in report["rows"] if row["scores"]]
    if not trained:
        return
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    truth = [statistics.mean(row["scores"]) for row in trained]
    for axis, name in zip(axes[0], names):
        points = [(row["error"][name], t) for row, t in zip(trained, truth) if name in row["error"]]
        if points:
            axis.scatter(*zip(*points))
        tau = report["rankings"].get(f"-ê ({name})", {}).get("kendall_tau")
        axis.set_title(f"ê {name}" + ("" if tau is None else f"\nτ = {tau:.2f}"), fontsize=9)
        axis.set_xlabel("ê (lower is predicted better)")
        axis.set_ylabel(f"trained {report['metric']}")
    figure.suptitle(f"{report['task']} ≥{report['budget']:g}x: compress's candidates", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
