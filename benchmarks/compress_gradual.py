"""Does gradual compression earn its time? (issue #22: "for deep cuts, gradual compression in steps with recovery
between them. Decide with evidence which of these earns its time.")

    OMP_NUM_THREADS=1 python benchmarks/compress_gradual.py --task sst2 --budget 3 --seeds 0 1 2 \
        --cache-dir /path/cache --output-dir benchmarks/results/compress_gradual

The student is the one `hf_bort.compress` chose for the leaderboard's hf_bort cell at this task and budget (its run in
the leaderboard's `--cache-dir`; run that cell first). Three ways to reach it from the fine-tuned parent, each then
given the leaderboard's one post-compression training (`benchmarks.leaderboard.finetune`, per seed) and scored on the
official dev set:

| arm | how the student is made |
|---|---|
| one-shot | cut from the parent in one step (what compress does; the leaderboard's hf_bort cell) |
| one-shot + recovery | the same student, then R = `--recovery-epochs` of the leaderboard's KD training (seed 0) |
| gradual | a halfway model (every parent layer keeps its best heads and FFN neurons, halfway between the parent's and the
  student's per-layer counts; the rest masked to zero and held there), R epochs of the same KD training on it, the
  parent's importance re-scored on it (Fisher, the search's rows), then the student cut from it |

The recovery arm is the control: gradual costs R epochs of training on the halfway model, so it must beat the same
epochs spent on the student itself. Printed and written: `gradual-<task>-<budget>x.json/.md` (scores per seed, mean
± std, the extra compression seconds). Cells are cached under `<cache-dir>/gradual/`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.compress_fidelity import cached, compress_folder, the_search_config  # noqa: E402
from benchmarks.leaderboard import (  # noqa: E402
    Leaderboard,
    Settings,
    bert_form,
    finetune,
    log,
    model_shapes,
    score,
    shape_text,
    task_metric,
)
from hf_bort import Architecture, compress_search  # noqa: E402
from hf_bort.compression.compress import halfway_sizes  # noqa: E402
from hf_bort.ose.extract import extract_subnetwork  # noqa: E402


ARMS = ("one-shot", "one-shot + recovery", "gradual")


def halfway_masks(parent, student_config, scores) -> list[dict[str, torch.Tensor]]:
    """Per parent layer, the heads and FFN neurons the halfway model keeps: its top ones by the search's scores, as
    many as `hf_bort.compression.compress.halfway_sizes` says (what compress's gradual step keeps)."""
    config, sizes = parent.config, halfway_sizes(parent.config, student_config)
    masks = []
    for j, (keep_heads, keep_neurons) in enumerate(zip(sizes["heads"], sizes["intermediate"])):
        head_mask = torch.zeros(config.num_attention_heads)
        head_mask[scores.heads[j].topk(keep_heads).indices] = 1
        neuron_mask = torch.zeros(config.intermediate_size)
        neuron_mask[scores.neurons[j].topk(keep_neurons).indices] = 1
        masks.append({"heads": head_mask, "neurons": neuron_mask})
    return masks


def mask_in_place(model, masks) -> list:
    """Zero the masked heads' output-projection columns and the masked neurons' weights, and hold them at zero
    through training (their gradients are masked; AdamW leaves a zero weight with zero gradient at zero)."""
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    handles = []
    for layer, mask in zip(model.bert.encoder.layer, masks):
        columns = mask["heads"].repeat_interleave(head_dim)
        neurons = mask["neurons"]
        for param, shape_mask in (
            (layer.attention.output.dense.weight, columns[None, :]),
            (layer.intermediate.dense.weight, neurons[:, None]),
            (layer.intermediate.dense.bias, neurons),
            (layer.output.dense.weight, neurons[None, :]),
        ):
            with torch.no_grad():
                param.mul_(shape_mask)
            handles.append(param.register_hook(lambda grad, m=shape_mask: grad * m))
    return handles


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--recovery-epochs", type=float, default=1.0)
    parser.add_argument("--cache-dir", type=Path, required=True, help="The leaderboard's cache (its compress runs).")
    parser.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    settings = dataclasses.replace(Settings(), tasks=(args.task,), budgets=(args.budget,), seeds=tuple(args.seeds))
    board = Leaderboard(settings, args.cache_dir, args.output_dir)
    folder = compress_folder(board, args.task, args.budget)
    arch = Architecture(**json.loads((folder / "results.json").read_text())["architecture"])
    data = board.task(args.task)
    parent = board.parent_model(args.task, 0)
    teacher = board.teacher_logits(args.task)
    search = compress_search(parent, data.train_rows, the_search_config(folder), board.tokenizer, journal=False)
    recovery = dataclasses.replace(settings, epochs=args.recovery_epochs)
    work = args.cache_dir / "gradual" / f"{folder.name}-r{args.recovery_epochs:g}"
    metric = task_metric(args.task)

    def one_shot():
        return bert_form(search.extract(arch), board.base_config), 0.0

    def one_shot_recovered():
        student, _ = one_shot()
        return student, finetune(student, data, recovery, 0, teacher)

    def gradual():
        started = time.perf_counter()
        halfway = board.parent_model(args.task, 0)
        handles = mask_in_place(halfway, halfway_masks(parent, search.extract(arch).config, search.importance()))
        finetune(halfway, data, recovery, 0, teacher)
        for handle in handles:
            handle.remove()
        # the search's importance rows and method, on the recovered halfway model
        scores = search.importance(halfway.eval())
        student = extract_subnetwork(halfway, arch, importance=scores, allocation=search.space.allocation)
        return bert_form(student, board.base_config), time.perf_counter() - started

    makers = dict(zip(ARMS, (one_shot, one_shot_recovered, gradual)))
    made = {}  # each arm's student is made once (seed 0), then trained per seed from a copy

    def student_of(arm):
        if arm not in made:
            made[arm] = makers[arm]()
        student, extra_seconds = made[arm]
        return copy.deepcopy(student), extra_seconds

    rows = {}
    for arm in makers:
        results = []
        for seed in args.seeds:

            def train(arm=arm, seed=seed):
                student, extra_seconds = student_of(arm)
                finetune(student, data, settings, seed, teacher)
                return {**score(student, data.dev, args.task), "shape": shape_text(model_shapes(student)),
                        "extra_compress_seconds": extra_seconds}  # fmt: skip

            path = work / f"{arm.replace(' ', '').replace('+', '_')}-seed{seed}.json"
            result = cached(path, train)
            log(f"{arm} seed {seed}: {metric} {result[metric]:.4f} ({result['shape']})")
            results.append(result)
        rows[arm] = results

    lines = [
        f"# Gradual compression against one step: {args.task}, >={args.budget:g}x, student {arch}",
        "",
        f"| arm | {metric} (mean ± std, seeds {', '.join(map(str, args.seeds))}) | per seed | shape | extra compression s |",
        "|---|---|---|---|---|",
    ]
    for arm, results in rows.items():
        values = [r[metric] for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(
            f"| {arm} | {statistics.mean(values):.4f} ± {spread:.4f} | {', '.join(f'{v:.4f}' for v in values)} | "
            f"{results[0]['shape']} | {results[0]['extra_compress_seconds']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"gradual-{args.task}-{args.budget:g}x"
    stem.with_suffix(".md").write_text(table + "\n")
    stem.with_suffix(".json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1)
    )
    return rows


if __name__ == "__main__":
    main()
