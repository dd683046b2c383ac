#!/usr/bin/env python
"""Fine-tune an encoder on one GLUE task and report the task's official metrics.

Works for Bort, any transformers encoder with a sequence-classification head, and either of them with a peft LoRA
adapter; on one process or many (`accelerate launch`). Outputs, in `--output_dir`: the model (or LoRA adapter) and
tokenizer saved Hub-ready, `results.json`, and a model card (`README.md`) rendered from `model_cards/`.

    accelerate launch recipes/glue.py --model amazon/bort --task sst2 --output_dir out/bort-sst2
    accelerate launch recipes/glue.py --model PATH --task rte --data_dir ../shared/data/glue --lora
    accelerate launch --multi_gpu --num_processes 2 recipes/glue.py ...   # also starts two CPU (gloo) processes

Honest splits: without `--agora` the official dev set is the evaluation set, as usual. With `--agora` the algorithm
learns from its dev set, so that set is carved out of train (`--agora_dev_fraction`) and the official dev set is
reported as the held-out test.
"""

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)

import hf_bort  # noqa: F401  (registers Bort with the Auto classes)
from hf_bort.agora import AgoraArguments, AgoraTrainer, carve_dev_split
from hf_bort.errors import run_main
from hf_bort.glue import GlueTask, get_task, load_glue
from hf_bort.hub import save_model_card
from hf_bort.metrics import load_glue_metric


@dataclass(frozen=True)
class TaskDefaults:
    learning_rate: float
    num_train_epochs: float
    max_length: int


# BERT-paper style settings; small or noisy tasks get more epochs. LoRA multiplies the learning rate by LORA_LR_SCALE.
TASK_DEFAULTS: dict[str, TaskDefaults] = {
    "cola": TaskDefaults(3e-5, 3, 64),
    "sst2": TaskDefaults(3e-5, 3, 64),
    "mrpc": TaskDefaults(3e-5, 5, 128),
    "stsb": TaskDefaults(3e-5, 5, 128),
    "qqp": TaskDefaults(3e-5, 3, 128),
    "mnli": TaskDefaults(3e-5, 3, 128),
    "qnli": TaskDefaults(3e-5, 3, 128),
    "rte": TaskDefaults(3e-5, 5, 128),
    "wnli": TaskDefaults(3e-5, 3, 128),
}
LORA_LR_SCALE = 10.0


def _defaults_table() -> str:
    rows = [
        f"  {name:<5} lr {d.learning_rate:g}  epochs {d.num_train_epochs:g}  max_length {d.max_length}"
        for name, d in TASK_DEFAULTS.items()
    ]
    return (
        "Per-task defaults (used when the flag is not given; --lora scales the learning rate by "
        f"{LORA_LR_SCALE:g}):\n" + "\n".join(rows)
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=_defaults_table(), formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", required=True, help="Hub id or local folder of the model to fine-tune.")
    parser.add_argument("--task", required=True, help="GLUE task: " + ", ".join(TASK_DEFAULTS) + ".")
    parser.add_argument(
        "--data_dir",
        help="Folder in the original GLUE layout (<TASK>/train.tsv...); default: nyu-mll/glue from the Hub.",
    )
    parser.add_argument("--output_dir", help="Default: outputs/<model name>-<task>.")
    parser.add_argument(
        "--overwrite_output_dir", action="store_true", help="Allow writing into a non-empty output dir."
    )
    parser.add_argument("--learning_rate", type=float, help="Default: per task (below).")
    parser.add_argument("--num_train_epochs", type=float, help="Default: per task (below).")
    parser.add_argument(
        "--max_length", type=int, help="Tokens per example, longer inputs are truncated. Default: per task (below)."
    )
    parser.add_argument("--per_device_train_batch_size", type=int, default=32)
    parser.add_argument("--per_device_eval_batch_size", type=int, default=64)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--warmup_steps", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max_train_samples", type=int, help="Train on a random subset of this many rows.")
    parser.add_argument("--max_eval_samples", type=int, help="Score on the first N rows of each eval/test split.")
    parser.add_argument("--logging_steps", type=int, default=50)
    parser.add_argument(
        "--ignore_mismatched_sizes",
        action="store_true",
        help="Replace a classification head whose label count differs from the task's.",
    )
    lora = parser.add_argument_group("LoRA (peft)")
    lora.add_argument("--lora", action="store_true", help="Train a LoRA adapter (and the classifier head) only.")
    lora.add_argument("--lora_r", type=int, default=8)
    lora.add_argument("--lora_alpha", type=int, default=16)
    lora.add_argument("--lora_dropout", type=float, default=0.1)
    lora.add_argument(
        "--lora_target_modules",
        default="query,value",
        help="Comma-separated module names (BERT/Bort: query,value; DistilBERT: q_lin,v_lin).",
    )
    agora = parser.add_argument_group("Agora")
    agora.add_argument("--agora", action="store_true", help="Fine-tune with Agora (hf_bort.agora).")
    agora.add_argument(
        "--agora_dev_fraction", type=float, default=0.1, help="Fraction of train carved out as Agora's dev set."
    )
    agora.add_argument("--agora_rounds", type=int, default=3, help="Maximum number of Agora rounds.")
    agora.add_argument(
        "--agora_teacher",
        help="Classifier already fine-tuned on the task that labels Agora's new rows (required with --agora).",
    )
    hub = parser.add_argument_group("Hub")
    hub.add_argument(
        "--push_to_hub", action="store_true", help="Upload the model and its card (passed to the Trainer)."
    )
    hub.add_argument("--hub_model_id", help="Hub repository, e.g. me/bort-sst2 (default: the output dir's name).")
    args = parser.parse_args(argv)

    task = get_task(args.task)
    defaults = TASK_DEFAULTS[task.name]
    if args.learning_rate is None:
        args.learning_rate = defaults.learning_rate * (LORA_LR_SCALE if args.lora else 1.0)
    args.num_train_epochs = defaults.num_train_epochs if args.num_train_epochs is None else args.num_train_epochs
    args.max_length = defaults.max_length if args.max_length is None else args.max_length
    if args.output_dir is None:
        args.output_dir = str(Path("outputs") / f"{Path(args.model.rstrip('/')).name}-{task.name}")
    if args.agora and args.agora_teacher is None:
        parser.error("--agora needs --agora_teacher: a classifier for the task that labels the rows Agora generates.")
    if not 0.0 < args.agora_dev_fraction < 1.0:
        parser.error(f"--agora_dev_fraction must be in (0, 1), got {args.agora_dev_fraction}.")
    return args


def check_output_dir(path: str | Path, overwrite: bool) -> None:
    """Never write over a user's earlier results unless asked to."""
    path = Path(path)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(
            f"Output directory {path} exists and is not empty. Pass --overwrite_output_dir to "
            "write into it anyway, or choose another --output_dir."
        )


def official_dev_splits(task: GlueTask) -> list[str]:
    return [split for split, _ in task.splits if split.startswith("validation")]


def load_splits(
    task: GlueTask, args: argparse.Namespace
) -> tuple[datasets.Dataset, dict[str, datasets.Dataset], dict[str, datasets.Dataset]]:
    """(train, eval sets watched during training, sets reported at the end), with honest roles under Agora."""
    dev_names = official_dev_splits(task)
    raw = load_glue(task, args.data_dir, splits=("train", *dev_names))
    train = raw["train"]
    if args.max_train_samples is not None and args.max_train_samples < len(train):
        train = train.shuffle(seed=args.seed).select(range(args.max_train_samples))
    official = {name: raw[name] for name in dev_names}
    if args.max_eval_samples is not None:
        official = {name: ds.select(range(min(args.max_eval_samples, len(ds)))) for name, ds in official.items()}
    if not args.agora:
        return train, official, official
    label_column = None if task.is_regression else "label"
    split = carve_dev_split(train, args.agora_dev_fraction, args.seed, label_column, text_columns=task.text_columns)
    train, dev = split["train"], split["dev"]
    reported = {name.replace("validation", "test"): ds for name, ds in official.items()}
    return train, {"dev": dev}, {"dev": dev, **reported}


def check_num_labels(config: PreTrainedConfig, task: GlueTask, ignore_mismatched_sizes: bool) -> None:
    """A checkpoint already fine-tuned for another label count would silently mis-train; say so instead."""
    trained_head = any(arch.endswith("ForSequenceClassification") for arch in (config.architectures or []))
    if trained_head and config.num_labels != task.num_labels and not ignore_mismatched_sizes:
        raise ValueError(
            f"The model's classification head has {config.num_labels} labels but GLUE {task.name} needs "
            f"{task.num_labels}. Pass --ignore_mismatched_sizes to replace the head with a new one, or pick a "
            "checkpoint trained for this task."
        )


def load_model(args: argparse.Namespace, task: GlueTask) -> PreTrainedModel:
    config = AutoConfig.from_pretrained(args.model)
    check_num_labels(config, task, args.ignore_mismatched_sizes)
    label_names = task.label_names or ("score",)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model,
        num_labels=task.num_labels,
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        problem_type="regression" if task.is_regression else "single_label_classification",
        ignore_mismatched_sizes=args.ignore_mismatched_sizes,
    )
    return add_lora(model, args) if args.lora else model


def add_lora(model: PreTrainedModel, args: argparse.Namespace):
    """Wrap the model with a LoRA adapter; the task head stays fully trainable and is saved with the adapter.

    peft's SEQ_CLS task covers `classifier`; BERT-style models also feed it through a `pooler` (Bort and RoBERTa
    keep that dense layer inside `classifier`), and a frozen pooler that was never trained for the task starves the
    head, so it is trained too.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    has_pooler = any(name.split(".")[-1] == "pooler" for name, _ in model.named_modules())
    config = LoraConfig(
        modules_to_save=["pooler"] if has_pooler else None,
        task_type=TaskType.SEQ_CLS,
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=[name.strip() for name in args.lora_target_modules.split(",")],
    )
    return get_peft_model(model, config)


def tokenize(dataset: datasets.Dataset, tokenizer, task: GlueTask, max_length: int) -> datasets.Dataset:
    def encode(batch):
        return tokenizer(*(batch[column] for column in task.text_columns), truncation=True, max_length=max_length)

    drop = [column for column in dataset.column_names if column != "label"]
    return dataset.map(encode, batched=True, remove_columns=drop, desc="Tokenizing")


def make_compute_metrics(task: GlueTask):
    metric = load_glue_metric(task.name)

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred
        predictions = np.squeeze(logits, -1) if task.is_regression else np.argmax(logits, axis=-1)
        return metric.compute(predictions=predictions, references=labels)

    return compute_metrics


def cpu_latency_ms(model, tokenizer, dataset: datasets.Dataset, task: GlueTask, max_length: int, n: int = 32) -> float:
    """Median wall time of one single-example forward pass on CPU (batch size 1, the serving case)."""
    device = next(model.parameters()).device
    model.eval().cpu()
    times = []
    with torch.inference_mode():
        for row in dataset.select(range(min(n, len(dataset)))):
            inputs = tokenizer(
                *(row[c] for c in task.text_columns), truncation=True, max_length=max_length, return_tensors="pt"
            )
            start = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - start)
    model.to(device)
    return 1000.0 * statistics.median(times)


def _has_accelerator() -> bool:
    if hasattr(torch, "accelerator"):
        return torch.accelerator.current_accelerator() is not None
    return torch.cuda.is_available()


def build_training_arguments(args: argparse.Namespace, cls: type = TrainingArguments, **extra) -> TrainingArguments:
    return cls(
        output_dir=args.output_dir,
        # without it, `accelerate launch --multi_gpu` on a CPU-only machine starts N unconnected single-process runs
        use_cpu=not _has_accelerator(),
        # sequence-classification losses are batch means that ignore `num_items_in_batch`: rescaling them by the
        # process count (the default) would double the loss and the gradients on two processes
        average_tokens_across_devices=False,
        learning_rate=args.learning_rate,
        num_train_epochs=args.num_train_epochs,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=args.logging_steps,
        report_to="none",
        push_to_hub=args.push_to_hub,
        hub_model_id=args.hub_model_id,
        **extra,
    )


def build_trainer(
    args: argparse.Namespace,
    task: GlueTask,
    model: PreTrainedModel,
    tokenizer,
    train: datasets.Dataset,
    eval_sets: dict[str, datasets.Dataset],
) -> tuple[Trainer, Callable[[datasets.Dataset], datasets.Dataset]]:
    """A plain Trainer on tokenised rows, or Agora's on raw text; also returns how to prepare a split for it."""
    common = {"model": model, "processing_class": tokenizer, "compute_metrics": make_compute_metrics(task)}
    if not args.agora:
        prepare = partial(tokenize, tokenizer=tokenizer, task=task, max_length=args.max_length)
        trainer = Trainer(
            args=build_training_arguments(args),
            train_dataset=prepare(train),
            eval_dataset={name: prepare(ds) for name, ds in eval_sets.items()},
            data_collator=DataCollatorWithPadding(tokenizer),
            **common,
        )
        return trainer, prepare
    agora_args = build_training_arguments(
        args,
        AgoraArguments,
        agora_rounds=args.agora_rounds,
        agora_max_length=args.max_length,
        agora_text_columns=list(task.text_columns),
    )
    teacher = (
        AutoModelForSequenceClassification.from_pretrained(args.agora_teacher),
        AutoTokenizer.from_pretrained(args.agora_teacher),
    )
    trainer = AgoraTrainer(
        args=agora_args,
        train_dataset=train,
        agora_dev_dataset=eval_sets["dev"],
        teacher=teacher,
        eval_dataset=eval_sets,
        **common,
    )
    return trainer, lambda ds: ds  # AgoraTrainer tokenises raw rows itself


def _official_metrics(output: dict[str, float], prefix: str, task: GlueTask) -> dict[str, float]:
    return {name: output[f"{prefix}_{name}"] for name in (*task.metrics, "loss")}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    task = get_task(args.task)
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    set_seed(args.seed)

    train, eval_sets, reported = load_splits(task, args)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = load_model(args, task)
    trainer, prepare = build_trainer(args, task, model, tokenizer, train, eval_sets)
    started = time.perf_counter()
    train_output = trainer.train()
    train_seconds = time.perf_counter() - started
    metrics = {
        name: _official_metrics(trainer.evaluate(prepare(ds), metric_key_prefix=name), name, task)
        for name, ds in reported.items()
    }
    trainer.save_model()
    if not trainer.is_world_process_zero():
        return {}

    first_reported = reported[next(n for n in reported if n != "dev")]
    results = {
        "task": task.name,
        "model": args.model,
        "lora": args.lora,
        "agora": args.agora,
        "official_dev_is": "test" if args.agora else "validation",
        "num_processes": trainer.args.world_size,
        "rows": {"train": len(train), **{name: len(ds) for name, ds in reported.items()}},
        "metrics": metrics,
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "train_seconds": round(train_seconds, 1),
        "train_loss": train_output.training_loss,
        "cpu_latency_ms": round(cpu_latency_ms(trainer.model, tokenizer, first_reported, task, args.max_length), 2),
        "hyperparameters": {
            k: getattr(args, k)
            for k in (
                "learning_rate",
                "num_train_epochs",
                "max_length",
                "per_device_train_batch_size",
                "seed",
                "max_train_samples",
            )
        },
    }
    if args.lora:
        results["hyperparameters"].update(
            lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_target_modules=args.lora_target_modules
        )
    if args.agora:
        results["agora_rounds"] = len(trainer.agora_history)
        results["agora_teacher"] = args.agora_teacher
        results["agora_history"] = [dataclasses.asdict(step) for step in trainer.agora_history]
    (Path(args.output_dir) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    card_kwargs = {"lora": args.lora, "num_parameters": results["num_parameters"]}
    save_model_card(args.output_dir, results=results, config=trainer.model.config, **card_kwargs)
    print(json.dumps({"task": task.name, "metrics": metrics, "num_processes": results["num_processes"]}, indent=2))
    if args.push_to_hub:
        trainer.push_to_hub()
        save_model_card(
            args.output_dir, results=results, config=trainer.model.config, push_to=trainer.hub_model_id, **card_kwargs
        )
    return results


if __name__ == "__main__":
    raise SystemExit(run_main(main, "glue.py"))
