"""`hf_bort.compress`: from a model fine-tuned on a task to the most accurate student that meets a speed budget.

    result = compress(model, train_dataset, eval_dataset, CompressConfig(output_dir="out", min_speedup=3))

1. **Search** (OSE, `objective="task_distill"`): candidates of the parent's space (heads at the parent's width, per
   layer by importance) within the budget are cut from the fine-tuned parent, ranked by its own task loss (Fisher),
   keep its classifier, and briefly learn its predictions; ê is their held-out distillation error, on a split carved
   from the training rows. The search minimises ê alone (W's weights 0, 0, 1: the budget bounds the costs) and, under
   `max_candidates`, tries the maximal candidates that meet the budget first, taking turns across depths
   (`hf_bort.ose.search.capped_order`).
2. **Choice** (`hf_bort.ose.selection.choose_under_budget`): the lowest ê among the candidates measured to meet the
   budget (CPU time, 1 thread, alternating with the parent, at 1x128 and 8x128 tokens; or, with `speed="flops"`,
   their forward FLOPs), saved in `choice.json`.
3. **Gradual cut** (`halfway_epochs` > 0): a halfway model (every parent layer keeps half-way between the parent's
   and the chosen student's heads and FFN neurons) learns the parent's predictions, is ranked again, and the student
   is cut from it rather than from the parent (`_gradual`); with `gradual_check` it is kept only when its short-run ê
   is below the one-cut student's.
4. **Recovery** (`TaskDistillationTrainer`): task distillation from the parent with layer-wise hidden-state matching.
5. **Report**: parent and student scored on `eval_dataset` (which no step above saw), the final speed-up measured
   again, the student saved with its tokenizer, `results.json` and a model card; optionally an ONNX Runtime folder.

A rerun into the same `output_dir` with the same parent, data and settings resumes: the finished search is reused
(its journal) with the choice it made (`choice.json`: timings are not taken again), and an unfinished gradual step or
recovery repeats from its start, so the result equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainingArguments,
)
from transformers.utils import logging

from ..errors import load_checkpoint
from ..metrics.scores import REGRESSION_METRICS, score
from ..ose import OSEConfig, OSESearch, SearchSpace
from ..ose.costs import config_costs, flops_speedup, forward_mflops
from ..ose.extract import extract_subnetwork, place_subnetwork
from ..ose.families import family_layout
from ..ose.journal import fingerprint_state_dict, fingerprint_tensors
from ..ose.latency import DEFAULT_SHAPES, measure_speedup
from ..ose.search import find_text_columns, ose_state
from ..ose.selection import Choice, choose_under_budget
from ..ose.space import layer_sizes, parent_architecture, read_dimension
from ..output_dir import check_output_dir, record_run
from .compress_config import CompressConfig
from .task_distillation import TaskDistillationTrainer


logger = logging.get_logger(__name__)

RECIPE = "compress"
# What a compress run writes in its output folder; an overwrite removes exactly these.
OUTPUTS = ("ose", "halfway", "recovery", "model", "onnx", "choice.json", "results.json", "README.md", "run_args.json")


@dataclass
class CompressResult:
    """The student (in memory and at `output_dir / "model"`) and everything `results.json` says about it."""

    model: PreTrainedModel
    output_dir: Path
    results: dict


def _scores(predictions: np.ndarray, labels: np.ndarray, regression: bool) -> dict[str, float]:
    """The task metrics (`hf_bort.metrics.scores`): Pearson and Spearman for regression; accuracy, Matthews
    correlation and, on a binary task, F1 otherwise."""
    if regression:
        names = REGRESSION_METRICS
    else:
        names = (
            ("accuracy", "f1", "matthews_correlation")
            if len(np.unique(labels)) <= 2
            else ("accuracy", "matthews_correlation")
        )
    return {name: score(name, predictions, labels) for name in names}


@torch.no_grad()
def _predict(model: PreTrainedModel, rows: dict[str, torch.Tensor], batch_size: int) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(rows["input_ids"]), batch_size):
        batch = {k: v[start : start + batch_size].to(device) for k, v in rows.items() if k != "labels"}
        logits = model(**batch).logits.float()
        outputs.append(logits.squeeze(-1) if logits.shape[-1] == 1 else logits.argmax(-1))
    return torch.cat(outputs).cpu().numpy()


def _tokenize(dataset, tokenizer, columns: tuple[str, str | None], max_length: int) -> dict[str, torch.Tensor]:
    first, second = columns
    encoded = tokenizer(
        list(dataset[first]),
        list(dataset[second]) if second else None,
        truncation=True,
        max_length=max_length,
        padding="max_length",
        return_tensors="pt",
    )
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def _check_labels(parent: PreTrainedModel, dataset, name: str) -> torch.Tensor:
    """The label column, as the parent's head reads it: class ids below num_labels, or floats for one output."""
    if "label" not in dataset.column_names:
        raise ValueError(f"{name} has no 'label' column (columns: {dataset.column_names}); compress needs labels.")
    labels = torch.tensor(list(dataset["label"]))
    num_labels = parent.config.num_labels
    if num_labels == 1:
        return labels.float()
    if labels.is_floating_point() or labels.min() < 0 or labels.max() >= num_labels:
        found = sorted(set(labels.tolist()))[:10]
        raise ValueError(
            f"{name}'s labels {found} do not fit the parent's head of {num_labels} classes (ids 0..{num_labels - 1}): "
            "pass the model fine-tuned on this task, or map the labels to its ids."
        )
    return labels


def _prepare_output_dir(config: CompressConfig, settings: dict) -> None:
    """A new or empty folder, this run's own earlier run (resumed), or an earlier compress run to replace with
    `overwrite_output_dir`; anything else is refused before any work."""
    out = Path(config.output_dir)
    flags = {"overwrite_flag": "--overwrite_output_dir", "resume_flag": "the same settings"}
    try:
        check_output_dir(out, RECIPE, settings, overwrite=config.overwrite_output_dir, resume=True, **flags)
    except ValueError:  # an earlier compress run with other settings
        if not config.overwrite_output_dir:
            raise
        for name in OUTPUTS:  # only what compress writes; the folder holds nothing else (check_output_dir said so)
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    record_run(out, RECIPE, settings, resume=True)


def compress(
    model: PreTrainedModel | str | os.PathLike,
    train_dataset,
    eval_dataset=None,
    config: CompressConfig | None = None,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    metric: str | None = None,
    text_column: list[str] | None = None,
) -> CompressResult:
    """The most accurate student of `model` at least `config.min_speedup` times faster, saved in `config.output_dir`.

    Args:
        model: a model fine-tuned on the task with a sequence-classification head, or its folder / Hub id.
        train_dataset: the labelled rows (a `datasets.Dataset` with text columns and `label`): the search learns and
            chooses on them (a carved, held-out part for ê), and the recovery trains on them.
        eval_dataset: labelled rows no step sees, on which parent and student are scored (e.g. the official dev set).
        config: a `CompressConfig`.
        tokenizer: the parent's (read from its folder when `model` is a path).
        metric: the headline score (`accuracy`, `f1`, `matthews_correlation`, `pearson`, ...); default accuracy, or
            Pearson for a regression head.
        text_column: one or two text columns; found automatically when unset.
    """
    if not isinstance(config, CompressConfig):
        raise TypeError(f"config must be a CompressConfig, got {type(config).__name__}; e.g. CompressConfig('out').")
    started = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        model = load_checkpoint(AutoModelForSequenceClassification, model, "parent")
    if tokenizer is None:
        raise ValueError("Pass tokenizer= when the parent is a model object rather than a folder.")
    if not type(model).__name__.endswith("ForSequenceClassification"):
        raise ValueError(
            f"compress starts from a model fine-tuned on the task, with a sequence-classification head; "
            f"{type(model).__name__} has none. Fine-tune it first (e.g. recipes/glue.py), or load it with "
            "AutoModelForSequenceClassification."
        )
    parent = model.eval()
    if config.halfway_epochs > 0 and not family_layout(getattr(parent.config, "model_type", ""))[0].per_layer:
        raise ValueError(
            f"halfway_epochs (gradual compression) needs a parent whose layers may differ (BERT layout); a "
            f"{parent.config.model_type!r} model cannot hold the halfway model. Set halfway_epochs=0."
        )
    regression = parent.config.num_labels == 1
    metric = metric or ("pearson" if regression else "accuracy")
    columns = find_text_columns(list(train_dataset.column_names), text_column, "train_dataset")
    train_labels = _check_labels(parent, train_dataset, "train_dataset")
    eval_labels = _check_labels(parent, eval_dataset, "eval_dataset") if eval_dataset is not None else None
    train_rows = {**_tokenize(train_dataset, tokenizer, columns, config.max_length), "labels": train_labels}
    eval_rows = None
    if eval_dataset is not None:
        eval_rows = {**_tokenize(eval_dataset, tokenizer, columns, config.max_length), "labels": eval_labels}
    settings = {
        **config.result_settings(),
        "parent_weights": fingerprint_state_dict(parent),
        "train_data": fingerprint_tensors(train_rows),
        "eval_data": fingerprint_tensors(eval_rows) if eval_rows is not None else None,
        "metric": metric,
    }
    state = ose_state()
    out = Path(config.output_dir)
    if state.is_main_process:
        _prepare_output_dir(config, settings)
    state.wait_for_everyone()

    # 1. the search, within the budget (candidates predicted to meet it on this device)
    search = compress_search(parent, train_dataset, config, tokenizer, text_column=list(c for c in columns if c))
    search_result = search.run()
    estimates, rescored = _rescore(search, search_result, config)
    parent.cpu()

    # 2. the choice: lowest ê among the candidates measured to meet the budget (timed on one process)
    from accelerate.utils import broadcast_object_list

    choice = [None]
    if state.is_main_process:
        choice = [_choose(estimates, parent, config, out / "choice.json")]
    if state.num_processes > 1:
        broadcast_object_list(choice)
    choice = choice[0]
    arch = choice.record.architecture
    student = search.extract(arch)  # the parent's classifier carried over
    # 3. the gradual cut: the student cut again from a trained halfway model
    gradual = {"halfway_epochs": config.halfway_epochs}
    if config.halfway_epochs > 0:
        cut, gradual = _gradual(search, arch, student, parent, train_rows, tokenizer, config, out / "halfway")
        if config.gradual_check:
            gradual["check"] = _check_gradual(search, arch, student, cut, config)
            if state.num_processes > 1:  # one decision for every process (the estimates are seeded alike)
                decided = [gradual["check"]]
                broadcast_object_list(decided)
                gradual["check"] = decided[0]
        if not config.gradual_check or gradual["check"]["kept"] == "gradual":
            student = cut
    search_seconds = time.perf_counter() - started

    # 4. recovery: task distillation from the parent
    recovery = {"epochs": config.recovery_epochs}
    if config.recovery_epochs > 0:
        recovery = _recover(student, parent, train_rows, tokenizer, config, out / "recovery")

    # 5. the report, on the main process (one process times and scores)
    results = [None]
    if state.is_main_process:
        search_rows = min(config.search_rows, len(train_dataset))
        results = [_report(student, parent, choice, search_result, search.args, search_rows, eval_rows, metric,
                           gradual, recovery, (search_seconds, time.perf_counter() - started), config)]  # fmt: skip
        results[0]["search"]["rescored"] = rescored
        search_result.save(out / "ose" / "result.json", overwrite=True)  # every candidate's numbers, for reading
        _save(student, tokenizer, results[0], config, out)
    if state.num_processes > 1:
        broadcast_object_list(results)
    state.wait_for_everyone()
    return CompressResult(student, out, results[0])


def _choose(estimates, parent, config: CompressConfig, path: Path) -> Choice:
    """`choose_under_budget`, or on a resume the choice the run already made (`path`): timings differ from run to
    run, so taking them again could choose another student from the same search."""
    if path.exists():
        saved = json.loads(path.read_text())
        record = next((r for r in estimates.records if r.architecture.as_dict() == saved["architecture"]), None)
        if record is not None:
            return Choice(record, saved["speedup"], saved["tried"])
    choice = choose_under_budget(estimates, parent, config.min_speedup, repeats=config.latency_repeats,
                                 margin=config.selection_margin, speed=config.speed)  # fmt: skip
    saved = {"architecture": choice.record.architecture.as_dict(), "speedup": choice.speedup, "tried": choice.tried}
    path.write_text(json.dumps(saved, indent=2) + "\n")
    return choice


def compress_search(
    parent: PreTrainedModel,
    train_dataset,
    config: CompressConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    text_column: list[str] | None = None,
    journal: bool = True,
) -> OSESearch:
    """The search `compress` runs for `config`, not yet started: its space, its settings, its rows.

    `compress` calls `.run()` on it; `benchmarks/compress_fidelity.py` calls `.estimate(...)` and `.extract(...)` to
    check what ê predicts under other search settings. `journal=False` writes nothing (no resumable journal).
    """
    search_rows = train_dataset.shuffle(seed=config.seed).select(range(min(config.search_rows, len(train_dataset))))
    target = config.min_speedup * config.selection_margin  # searched with the margin the choice needs
    # FLOPs are exact: the space keeps only what meets the budget at the choice's sequence length (the ratio falls
    # with length); measured speed is predicted and timed before training on the shapes the choice checks
    counted = config.speed == "flops"
    max_flops = config_costs(parent.config, DEFAULT_SHAPES[0][1])[1] / target if counted else None
    timed = {} if counted else dict(min_speedup=target, latency_batch_sizes=[batch for batch, _ in DEFAULT_SHAPES])
    space = SearchSpace.from_config(
        parent.config,
        num_heads=config.num_heads,
        hidden_sizes=config.hidden_sizes,
        intermediate_sizes=config.intermediate_sizes,
        step=config.step,
        allocation=config.allocation,
        max_flops=max_flops,
        seq_len=DEFAULT_SHAPES[0][1],
    )
    ose_config = OSEConfig(
        objective="task_distill",
        weights=[0.0, 0.0, 1.0],  # the budget bounds the costs; among what meets it, the lowest ê is wanted
        importance=config.importance,
        epsilon=config.epsilon,
        interval=config.interval,
        step_scale=config.step_scale,
        max_candidates=config.max_candidates,
        seq_len=config.search_seq_len,
        learning_rate=config.search_learning_rate,
        batch_size=config.search_batch_size,
        **timed,
        latency_seq_len=DEFAULT_SHAPES[0][1],
        latency_repeats=config.latency_repeats,
        latency_cache_dir=config.latency_cache_dir,
        text_column=text_column,
        seed=config.seed,
        output_dir=str(Path(config.output_dir) / "ose") if journal else None,
        show_progress=config.show_progress,
    )
    return OSESearch(parent, ose_config, space=space, train_dataset=search_rows, tokenizer=tokenizer)


def _rescore(search: OSESearch, result, config: CompressConfig) -> tuple:
    """The result the choice reads, and what was done: the search's own, or, when the median ê is at least
    `rescore_above` (the short runs did not separate the candidates from a constant predictor), a copy whose every
    candidate is estimated again on `rescore_factor` times longer runs (the search's saved result, front and W stay as
    searched). The estimates are deterministic (seeded per candidate), so a resumed run gets the same ones."""
    median = float(np.median([r.error for r in result.records]))
    done = {"median_error": median, "above": config.rescore_above, "steps": None}
    if config.rescore_above is None or median < config.rescore_above:
        return result, done
    steps = math.ceil(result.steps * config.rescore_factor)
    start = time.perf_counter()
    records = search.estimate([r.architecture for r in result.records], steps=steps)
    # only ê is estimated again: each candidate keeps the speed the search measured before training it
    records = [
        replace(new, latency_ms=old.latency_ms, speedup=old.speedup, timing=old.timing)
        for new, old in zip(records, result.records)
    ]
    logger.info(f"ê's median {median:.3f} >= {config.rescore_above}: the candidates estimated again in {steps} steps")
    done.update(
        steps=steps, seconds=round(time.perf_counter() - start, 1), short_errors=[r.error for r in result.records]
    )
    return replace(result, records=records), done


def _report(student, parent, choice, search_result, ose_config, search_rows, eval_rows, metric, gradual, recovery,
            seconds, config) -> dict:  # fmt: skip
    """What results.json and the card say: the student, its measured speed-up, how it was chosen, its scores."""
    regression = parent.config.num_labels == 1
    speed = measure_speedup(student.base_model, parent.base_model, DEFAULT_SHAPES, repeats=config.latency_repeats)
    results = {
        "parent": getattr(parent.config, "_name_or_path", "") or type(parent).__name__,
        "metric": metric,
        "min_speedup": config.min_speedup,
        "architecture": choice.record.architecture.as_dict(),
        "layers": layer_sizes(student.config),
        "parameters": {
            "student": sum(p.numel() for p in student.parameters()),
            "parent": sum(p.numel() for p in parent.parameters()),
        },
        "speedup": speed.to_dict(),
        "speedup_flops": flops_speedup(
            forward_mflops(student.base_model.config, DEFAULT_SHAPES),
            forward_mflops(parent.base_model.config, DEFAULT_SHAPES),
        ),
        "speedup_at_choice": choice.speedup,
        "search": {
            "error": choice.record.error,
            "w": choice.record.w,
            "evaluated": len(search_result.records),
            "guarantee": search_result.guarantee,
            "chosen_by": f"the lowest held-out ê among candidates {'counted' if config.speed == 'flops' else 'measured'} "
            "to meet the budget, ê on a split "
            f"carved from the training rows ({ose_config.holdout_fraction:.0%} of the {search_rows} the search used)",
            "measured": choice.tried,
        },
        "gradual": gradual,
        "recovery": recovery,
        "seconds": {"compression": round(seconds[0], 1), "total": round(seconds[1], 1)},
        "config": config.to_dict(),
    }
    if eval_rows is not None:
        scores = {
            name: _scores(_predict(m, eval_rows, 64), eval_rows["labels"].numpy(), regression)
            for name, m in (("parent", parent), ("student", student))
        }
        results["eval"] = {**scores, "rows": len(eval_rows["input_ids"])}
        parent_score = scores["parent"].get(metric)
        if parent_score:
            results["share_of_parent"] = scores["student"][metric] / parent_score
    return results


def halfway_sizes(parent_config, student_config) -> dict[str, list[int]]:
    """Per parent layer, the heads and FFN neurons of the halfway model: ceil((parent's + student's) / 2), the
    student's count being 0 for a layer it dropped."""
    heads, neurons = read_dimension(parent_config, "heads"), read_dimension(parent_config, "intermediate")
    sizes = layer_sizes(student_config)
    kept = dict(zip(student_config.parent_layers, zip(sizes["heads"], sizes["intermediate"])))
    depth = read_dimension(parent_config, "depth")
    return {
        "heads": [math.ceil((heads + kept.get(j, (0, 0))[0]) / 2) for j in range(depth)],
        "intermediate": [math.ceil((neurons + kept.get(j, (0, 0))[1]) / 2) for j in range(depth)],
    }


def _gradual(search: OSESearch, arch, one_shot, parent, rows, tokenizer, config: CompressConfig, folder: Path):
    """Gradual compression in two steps: the halfway model (`halfway_sizes`, cut from the parent by its scores) learns
    the parent's predictions for `halfway_epochs`, is scored again on the search's rows, and the student of `arch` is
    cut from it (`place_subnetwork` puts it back in the parent's shape, where extraction can read it).

    Measured against one step (`benchmarks/results/compress_gradual/`): the re-scored importance moves heads and
    neurons to where the recovered model needs them."""
    started = time.perf_counter()
    scores = search.importance()
    whole = parent_architecture(parent.config)
    # the parent as a Bort model (the same function), the container the halfway model is cut from and placed back in
    full = extract_subnetwork(parent, whole, as_bort=True, importance=scores)
    sizes = halfway_sizes(parent.config, one_shot.config)
    mean = replace(whole, heads=max(1, sum(sizes["heads"]) // whole.depth),
                   intermediate=max(1, sum(sizes["intermediate"]) // whole.depth),
                   head_dim=whole.head_dim or whole.hidden // whole.heads)  # fmt: skip  # the parent's head width
    halfway = extract_subnetwork(full, mean, importance=scores, allocation=sizes)
    trained = _recover(halfway, parent, rows, tokenizer, replace(config, recovery_epochs=config.halfway_epochs),
                       folder)  # fmt: skip
    placed = place_subnetwork(full, halfway.eval(), scores)
    rescored = search.importance(placed)
    student = extract_subnetwork(placed, arch, importance=rescored, allocation=search.space.allocation)
    return student.train(one_shot.training), {
        "halfway_epochs": config.halfway_epochs,
        "halfway_layers": sizes,
        "steps": trained["steps"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _check_gradual(search: OSESearch, arch, one_cut, gradual, config: CompressConfig) -> dict:
    """Which cut the student keeps: the lower ê in short runs of `rescore_factor` times the search's steps (the
    rescore's length; at the search's own nine steps ê ranked the two cuts of MRPC >=6x the wrong way)."""
    steps = math.ceil(search.steps * config.rescore_factor)
    errors = {
        "one cut": search.estimate_model(one_cut, arch, steps),
        "gradual": search.estimate_model(gradual, arch, steps),
    }
    kept = "gradual" if errors["gradual"] < errors["one cut"] else "one cut"
    logger.info(f"gradual cut ê {errors['gradual']:.3f}, one cut {errors['one cut']:.3f} ({steps} steps): {kept} kept")
    return {"steps": steps, "errors": errors, "kept": kept}


def _recover(student, parent, rows: dict[str, torch.Tensor], tokenizer, config: CompressConfig, folder: Path) -> dict:
    """Task distillation from the parent on every training row (`TaskDistillationTrainer`)."""
    from datasets import Dataset

    unpadded = []
    for ids, mask, label in zip(rows["input_ids"], rows["attention_mask"], rows["labels"]):
        length = int(mask.sum())
        unpadded.append({"input_ids": ids[:length].tolist(), "attention_mask": [1] * length, "labels": label.item()})
    args = TrainingArguments(
        output_dir=str(folder),
        num_train_epochs=config.recovery_epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size,
        warmup_steps=math.ceil(0.1 * config.recovery_epochs * math.ceil(len(unpadded) / config.batch_size)),
        weight_decay=0.01,
        save_strategy="no",
        logging_steps=max(1, math.ceil(len(unpadded) / config.batch_size / 5)),
        report_to=[],
        seed=config.seed,
        disable_tqdm=not config.show_progress,
        # on a machine with no accelerator, `accelerate launch --multi_gpu` processes train as one gloo group only so
        use_cpu=not torch.accelerator.is_available(),
        ddp_find_unused_parameters=False,  # every student parameter takes part in the loss
    )
    trainer = TaskDistillationTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_list(unpadded),
        data_collator=DataCollatorWithPadding(tokenizer),
        teacher=parent,
        kd_alpha=config.kd_alpha,
        kd_temperature=config.kd_temperature,
        layer_weight=config.layer_weight,
    )
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "epochs": config.recovery_epochs,
        "steps": output.global_step,
        "loss": losses,
        "seconds": output.metrics["train_runtime"],
    }


def _save(student, tokenizer, results: dict, config: CompressConfig, out: Path) -> None:
    from ..hub import render_compression_card

    model_dir = out / "model"
    student.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    card = render_compression_card(results, student.config)
    card.save(model_dir / "README.md")
    if config.export is not None:
        from ..modeling_ort import export_for_ort

        export_for_ort(model_dir, out / "onnx", int8=config.export == "int8")
        results["export"] = {"folder": str(out / "onnx"), "int8": config.export == "int8"}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


__all__ = ["CompressResult", "compress"]
