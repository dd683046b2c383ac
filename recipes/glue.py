#!/usr/bin/env python
"""Fine-tune an encoder on a GLUE task, or on any text-classification / regression data, and report its metrics.

In the shape of transformers' `examples/pytorch/text-classification/run_glue.py`: `HfArgumentParser` over the
script's `ModelArguments` and `DataTrainingArguments` and over `AgoraArguments` (transformers' `TrainingArguments`
plus every Agora setting), so every Trainer and Agora option is a flag with its help (`--help` lists them).
Works for Bort, any transformers encoder with a sequence-classification head, and either with a peft LoRA adapter;
on one process or many (`accelerate launch`). Outputs, in `--output_dir`: the model (or LoRA adapter) and tokenizer
saved Hub-ready, `results.json`, and for GLUE tasks a model card (`README.md`) rendered from `model_cards/`.

    accelerate launch recipes/glue.py --model_name_or_path amazon/bort --task_name sst2 --output_dir out/bort-sst2
    accelerate launch recipes/glue.py --model_name_or_path PATH --task_name rte --data_dir ../shared/data/glue --lora
    python recipes/glue.py --model_name_or_path PATH --train_file train.csv --validation_file dev.csv --output_dir o
    accelerate launch --multi_gpu --num_processes 2 recipes/glue.py ...   # also starts two CPU (gloo) processes

Data files (CSV, TSV or JSON lines) need a `label` column: integers or names for classification, numbers written with
a decimal point (`3.5`, `1.0`) for regression; the training file decides, and a column that mixes kinds or holds a
stray value is refused, naming the rows (hf_bort.data_files). The text is `sentence1`/`sentence2` when present, else
the first one or two other columns.
Checkpoints: `--save_strategy epoch` (or steps) writes them; `--resume_from_checkpoint PATH` (or `True`, the last one
in `--output_dir`, Agora's included) continues a run, after checking the run's settings are the ones it started with.
`--output_dir` must be new, empty or an earlier run of this recipe (`run_args.json`); a folder holding anything else is
refused, with `--overwrite_output_dir` or a resume too (hf_bort.output_dir).

Honest splits: without `--agora` the validation set is the evaluation set, as usual. With `--agora` the algorithm
learns from its dev set, so that set is carved out of train (`--agora_dev_fraction`), a second split apart from it
picks the model (`--agora_selection_fraction`, 0.1 by default), and the official dev set is reported as the held-out
test; an `--agora_pool` that holds official dev rows is refused.
"""

import argparse
import dataclasses
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    PreTrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

import hf_bort  # noqa: F401  (registers Bort with the Auto classes)
from hf_bort.agora import AgoraArguments, AgoraTrainer, carve_dev_split, find_agora_checkpoint
from hf_bort.data_files import Table, encode_labels, infer_label_names, read_table
from hf_bort.errors import check_model_source, load_checkpoint, run_main
from hf_bort.extras import require
from hf_bort.glue import GLUE_TASKS, GlueTask, TextTask, get_task, glue_files, load_glue
from hf_bort.hub import save_model_card
from hf_bort.metrics import load_glue_metric
from hf_bort.output_dir import check_output_dir, record_run


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskDefaults:
    learning_rate: float
    num_train_epochs: float
    max_seq_length: int


# GLUE tasks carry their own defaults (hf_bort.glue.GLUE_TASKS); data files get these. LoRA multiplies the learning
# rate by LORA_LR_SCALE.
FILE_DEFAULTS = TaskDefaults(3e-5, 3, 128)
LORA_LR_SCALE = 10.0
# The recipe's defaults for TrainingArguments fields (shown by --help; any flag overrides them).
TRAINING_DEFAULTS = {
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "weight_decay": 0.01,
    "seed": 42,
    "logging_steps": 50,
    "eval_strategy": "epoch",
    "save_strategy": "no",
    "report_to": "none",
    "agora_rounds": 3,
}
# Settings that decide a run's result: a resumed run must have the same.
_RESUME_KEYS = ("model_name_or_path", "task_name", "train_file", "validation_file", "max_seq_length", "seed",
                "max_train_samples", "learning_rate", "lora", "agora", "agora_dev_fraction",
                "agora_selection_fraction")  # fmt: skip


@dataclass
class ModelArguments:
    """Which model to fine-tune, and how (full, LoRA, or with Agora and a teacher)."""

    model_name_or_path: str = field(metadata={"help": "Hub id or local folder of the model to fine-tune."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Replace a classification head whose label count differs from the data's."}
    )
    lora: bool = field(default=False, metadata={"help": "Train a LoRA adapter (and the classifier head) only."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: str = field(
        default="query,value",
        metadata={"help": "Comma-separated module names (BERT/Bort: query,value; DistilBERT: q_lin,v_lin)."},
    )
    agora: bool = field(default=False, metadata={"help": "Fine-tune with Agora (hf_bort.agora)."})
    agora_teacher: str | None = field(
        default=None,
        metadata={"help": "Classifier already fine-tuned on the task that labels Agora's new rows (with --agora)."},
    )


@dataclass
class DataTrainingArguments:
    """Which data: a GLUE task (`--task_name`) or files (`--train_file`, `--validation_file`, `--test_file`)."""

    task_name: str | None = field(
        default=None, metadata={"help": "GLUE task: " + ", ".join(GLUE_TASKS) + ". Or use --train_file."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Folder in the original GLUE layout (<TASK>/train.tsv...); default: nyu-mll/glue."},
    )
    train_file: str | None = field(default=None, metadata={"help": "Training data: .csv, .tsv or .json(l)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation data, same format."})
    test_file: str | None = field(default=None, metadata={"help": "Labelled test data, scored at the end."})
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Tokens per example, longer inputs are truncated. Default: per task."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on a random subset of N rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Score the first N rows of each split."})
    agora_dev_fraction: float = field(
        default=0.1, metadata={"help": "Fraction of train carved out as Agora's dev set (with --agora)."}
    )
    agora_selection_fraction: float = field(
        default=0.1,
        metadata={
            "help": "With --agora: also carve this fraction of train as a selection split, apart from Agora's dev "
            "split, that picks the round and setting and on which the teacher is compared with the student after "
            "round one. 0 lets the dev split pick, which is optimistic: Agora trains near its errors."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an earlier run of this recipe in --output_dir (any other folder is refused)."},
    )


class RecipeArguments(NamedTuple):
    model: ModelArguments
    data: DataTrainingArguments
    training: AgoraArguments


def _defaults_table() -> str:
    rows = [
        f"  {name:<5} lr {d.learning_rate:g}  epochs {d.num_train_epochs:g}  max_seq_length {d.max_seq_length}"
        for name, d in GLUE_TASKS.items()
    ]
    return (
        "Per-task defaults (used when the flag is not given; --lora scales the learning rate by "
        f"{LORA_LR_SCALE:g}):\n" + "\n".join(rows)
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in each flag's help (as HfArgumentParser does) and the per-task table kept as written."""


def _given(argv: list[str], name: str) -> bool:
    return any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in argv)


def parse_args(argv: list[str] | None = None) -> RecipeArguments:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser(
        (ModelArguments, DataTrainingArguments, AgoraArguments),
        epilog=_defaults_table(),
        formatter_class=_HelpFormatter,
    )
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(**TRAINING_DEFAULTS)
    if not _given(argv, "output_dir"):
        argv += ["--output_dir", "__default__"]  # filled in below, once the model and task are known
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)

    if data_args.task_name is None and data_args.train_file is None:
        parser.error("Pass --task_name (a GLUE task) or --train_file (with --validation_file) to choose the data.")
    if data_args.task_name is not None and data_args.train_file is not None:
        parser.error("Pass either --task_name or --train_file, not both.")
    if data_args.task_name is not None:
        defaults = get_task(data_args.task_name)
        task_name = defaults.name
    else:
        task_name, defaults = Path(data_args.train_file).stem, FILE_DEFAULTS
    for name, value in (("max_train_samples", data_args.max_train_samples), ("max_eval_samples", data_args.max_eval_samples)):  # fmt: skip
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}; leave it out to use every row.")
    if not _given(argv, "learning_rate"):
        training_args.learning_rate = defaults.learning_rate * (LORA_LR_SCALE if model_args.lora else 1.0)
    if not _given(argv, "num_train_epochs"):
        training_args.num_train_epochs = defaults.num_train_epochs
    if data_args.max_seq_length is None:
        data_args.max_seq_length = defaults.max_seq_length
    if training_args.output_dir == "__default__":
        training_args.output_dir = str(
            Path("outputs") / f"{Path(model_args.model_name_or_path.rstrip('/')).name}-{task_name}"
        )
    if model_args.agora and model_args.agora_teacher is None:
        parser.error("--agora needs --agora_teacher: a classifier for the task that labels the rows Agora generates.")
    if not 0.0 < data_args.agora_dev_fraction < 1.0:
        parser.error(f"--agora_dev_fraction must be in (0, 1), got {data_args.agora_dev_fraction}.")
    if not 0.0 <= data_args.agora_selection_fraction < 1.0 - data_args.agora_dev_fraction:
        parser.error(
            f"--agora_selection_fraction must be in [0, 1 - agora_dev_fraction), got {data_args.agora_selection_fraction}."
        )
    return RecipeArguments(model_args, data_args, training_args)


def _run_settings(args: RecipeArguments) -> dict:
    settings = {**dataclasses.asdict(args.model), **dataclasses.asdict(args.data)}
    return {key: settings.get(key, getattr(args.training, key, None)) for key in _RESUME_KEYS}


def _resume(args: RecipeArguments) -> str | bool | None:
    """`--resume_from_checkpoint True` (the last checkpoint of --output_dir, as in run_glue.py) or a path."""
    resume = args.training.resume_from_checkpoint
    return True if resume in ("True", "true", True) else resume


def find_checkpoint(args: RecipeArguments) -> str | None:
    """The checkpoint a resumed run continues, found before any work: `True` means the last one in --output_dir, by
    the rules of the trainer that wrote it (Agora saves under agora-round-N/, per round and setting)."""
    resume, output_dir = _resume(args), args.training.output_dir
    if resume is True:
        if args.model.agora:
            return find_agora_checkpoint(True, output_dir)
        last = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
        if last is None:
            raise FileNotFoundError(
                f"No checkpoint-* folder in {output_dir} to resume from; pass its path, or train with "
                "--save_strategy epoch to write checkpoints."
            )
        return last
    if resume is not None and not Path(resume).is_dir():
        raise FileNotFoundError(f"--resume_from_checkpoint {resume} is not a folder; pass a checkpoint-* folder.")
    return resume


def _read_files(data: DataTrainingArguments) -> dict[str, Table]:
    files = {"train": data.train_file, "validation": data.validation_file, "test": data.test_file}
    tables = {split: read_table(path, f"--{split}_file") for split, path in files.items() if path is not None}
    suffixes = {table.path.suffix.lower().replace(".jsonl", ".json") for table in tables.values()}
    if len(suffixes) != 1:
        raise ValueError(f"Data files must all have one format (.csv, .tsv or .json(l)), got {sorted(suffixes)}.")
    return tables


def _file_task(name: str, tables: dict[str, Table]) -> TextTask:
    """Label kind and text columns as run_glue.py reads them: `label`, then sentence1/sentence2 or the first others.
    The training file's labels decide the task, once (hf_bort.data_files.infer_label_names)."""
    train = tables["train"]
    for split, table in tables.items():
        if "label" not in table.columns:
            raise ValueError(
                f"--{split}_file {table.path} has no 'label' column (columns: {table.columns}); name the column "
                "holding the class or score 'label'."
            )
    others = [c for c in train.columns if c != "label"]
    text_columns = ("sentence1", "sentence2") if {"sentence1", "sentence2"} <= set(others) else tuple(others[:2])
    if not text_columns:
        raise ValueError("The training file has only a 'label' column; add the text column(s) to classify.")
    for split, table in tables.items():
        absent = [c for c in text_columns if c not in table.columns]
        if absent:
            raise ValueError(f"--{split}_file {table.path} has no column {absent} (the training file's text columns).")
    return TextTask(name=name, text_columns=text_columns, label_names=infer_label_names(train))


def _dataset(table: Table, task: TextTask) -> datasets.Dataset:
    """A file's text columns (as text) and labels (class ids, or float32 scores), in the label order of train."""
    columns = {c: ["" if v is None else str(v) for v in table.column(c)] for c in task.text_columns}
    features = {c: datasets.Value("string") for c in task.text_columns}
    columns["label"] = encode_labels(table, task.label_names)
    features["label"] = (
        datasets.Value("float32") if task.is_regression else datasets.ClassLabel(names=list(task.label_names))
    )
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def load_data(args: RecipeArguments) -> tuple[TextTask, datasets.DatasetDict]:
    """The task and its train + dev (+ test) splits, from GLUE or from data files."""
    data = args.data
    if data.task_name is not None:
        task = get_task(data.task_name)
        return task, load_glue(task.name, data.data_dir, splits=("train", *task.dev_splits))
    if data.validation_file is None and not args.model.agora:
        raise ValueError("--train_file needs --validation_file to score the model on (or --agora, which carves one).")
    tables = _read_files(data)
    task = _file_task(Path(data.train_file).stem, tables)
    return task, datasets.DatasetDict({split: _dataset(table, task) for split, table in tables.items()})


def load_splits(
    task: TextTask, raw: datasets.DatasetDict, args: RecipeArguments
) -> tuple[datasets.Dataset, dict[str, datasets.Dataset], dict[str, datasets.Dataset]]:
    """(train, eval sets watched during training, sets reported at the end), with honest roles under Agora."""
    data, seed = args.data, args.training.seed
    train = raw["train"]
    if data.max_train_samples is not None and data.max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(data.max_train_samples))
    official = {name: raw[name] for name in task.dev_splits if name in raw}
    if data.max_eval_samples is not None:
        official = {name: ds.select(range(min(data.max_eval_samples, len(ds)))) for name, ds in official.items()}
    test = {"test": raw["test"]} if "test" in raw and not isinstance(task, GlueTask) and not args.model.agora else {}
    if not args.model.agora:
        return train, official, {**official, **test}
    label_column = None if task.is_regression else "label"
    split = carve_dev_split(train, data.agora_dev_fraction, seed, label_column, text_columns=task.text_columns)
    train, carved = split["train"], {"dev": split["dev"]}
    if data.agora_selection_fraction > 0:  # a second split, apart from the one Agora expands around, picks the model
        share = data.agora_selection_fraction / (1.0 - data.agora_dev_fraction)
        split = carve_dev_split(train, share, seed + 1, label_column, text_columns=task.text_columns)
        train, carved["selection"] = split["train"], split["dev"]
    reported = {name.replace("validation", "test"): ds for name, ds in official.items()}
    return train, carved, {**carved, **reported, **test}


def check_num_labels(config: PreTrainedConfig, task: TextTask, ignore_mismatched_sizes: bool) -> None:
    """A checkpoint already fine-tuned for another label count would silently mis-train; say so instead."""
    trained_head = any(arch.endswith("ForSequenceClassification") for arch in (config.architectures or []))
    if trained_head and config.num_labels != task.num_labels and not ignore_mismatched_sizes:
        data = f"GLUE {task.name}" if isinstance(task, GlueTask) else f"the data ({task.name})"
        raise ValueError(
            f"The model's classification head has {config.num_labels} labels but {data} needs "
            f"{task.num_labels}. Pass --ignore_mismatched_sizes to replace the head with a new one, or pick a "
            "checkpoint trained for this task."
        )


def load_model(args: RecipeArguments, task: TextTask) -> PreTrainedModel:
    model_args = args.model
    check_model_source(model_args.model_name_or_path, "--model_name_or_path")
    config = AutoConfig.from_pretrained(model_args.model_name_or_path)
    check_num_labels(config, task, model_args.ignore_mismatched_sizes)
    label_names = task.label_names or ("score",)
    model = load_checkpoint(
        AutoModelForSequenceClassification,
        model_args.model_name_or_path,
        "--model_name_or_path",
        new_weights=True,  # a base checkpoint gets the task's head; a replaced one is asked for (check_num_labels)
        num_labels=task.num_labels,
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        problem_type="regression" if task.is_regression else "single_label_classification",
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    return add_lora(model, model_args) if model_args.lora else model


def add_lora(model: PreTrainedModel, model_args: ModelArguments):
    """Wrap the model with a LoRA adapter; the task head stays fully trainable and is saved with the adapter.

    peft's SEQ_CLS task covers `classifier`; BERT-style models also feed it through a `pooler` (Bort and RoBERTa
    keep that dense layer inside `classifier`), and a frozen pooler that was never trained for the task starves the
    head, so it is trained too.
    """
    peft = require("peft")
    has_pooler = any(name.split(".")[-1] == "pooler" for name, _ in model.named_modules())
    config = peft.LoraConfig(
        modules_to_save=["pooler"] if has_pooler else None,
        task_type=peft.TaskType.SEQ_CLS,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=[name.strip() for name in model_args.lora_target_modules.split(",")],
    )
    return peft.get_peft_model(model, config)


def tokenize(dataset: datasets.Dataset, tokenizer, task: TextTask, max_length: int) -> datasets.Dataset:
    def encode(batch):
        return tokenizer(*(batch[column] for column in task.text_columns), truncation=True, max_length=max_length)

    drop = [column for column in dataset.column_names if column != "label"]
    return dataset.map(encode, batched=True, remove_columns=drop, desc="Tokenizing")


def make_compute_metrics(task: TextTask):
    metric = load_glue_metric(task.metric_config)

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred
        predictions = np.squeeze(logits, -1) if task.is_regression else np.argmax(logits, axis=-1)
        return metric.compute(predictions=predictions, references=labels)

    return compute_metrics


def cpu_latency_ms(model, tokenizer, dataset: datasets.Dataset, task: TextTask, max_length: int, n: int = 32) -> float:
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


def build_training_arguments(
    args: RecipeArguments, task: TextTask, cls: type = TrainingArguments
) -> TrainingArguments:
    """The parsed arguments as the Trainer's: every flag as given, plus what the recipe decides itself."""
    settings = {f.name: getattr(args.training, f.name) for f in dataclasses.fields(cls) if f.init}
    return cls(
        **{
            **settings,
            # without it, `accelerate launch --multi_gpu` on a CPU-only machine starts N unconnected runs
            "use_cpu": args.training.use_cpu or not _has_accelerator(),
            # sequence-classification losses are batch means that ignore `num_items_in_batch`: rescaling them by
            # the process count (the default) would double the loss and the gradients on two processes
            "average_tokens_across_devices": False,
            **(
                {
                    "agora_max_length": args.data.max_seq_length,
                    "agora_text_columns": list(task.text_columns),
                    # rank rounds and settings by the task's own metric (F1 for MRPC, Matthews for CoLA) by default
                    "agora_metric": args.training.agora_metric or _agora_metric(task),
                }
                if cls is AgoraArguments
                else {}
            ),
        }
    )


def _agora_metric(task: TextTask) -> str | None:
    """The task's own metric for ranking Agora's rounds and settings: Matthews for CoLA, F1 where GLUE reports it
    (MRPC, QQP), Pearson for STS-B, else accuracy (None: a task with none of these, Agora's default)."""
    return next((m for m in ("matthews_correlation", "f1", "pearson", "accuracy") if m in task.metrics), None)


def build_trainer(
    args: RecipeArguments,
    task: TextTask,
    model: PreTrainedModel,
    tokenizer,
    train: datasets.Dataset,
    eval_sets: dict[str, datasets.Dataset],
    held_out: list[datasets.Dataset] | None = None,
) -> tuple[Trainer, Callable[[datasets.Dataset], datasets.Dataset]]:
    """A plain Trainer on tokenised rows, or Agora's on raw text; also returns how to prepare a split for it.
    `held_out`: the splits reported at the end that no algorithm may see (an Agora pool must not hold their rows)."""
    common = {"model": model, "processing_class": tokenizer, "compute_metrics": make_compute_metrics(task)}
    if not args.model.agora:
        prepare = partial(tokenize, tokenizer=tokenizer, task=task, max_length=args.data.max_seq_length)
        trainer = Trainer(
            args=build_training_arguments(args, task),
            train_dataset=prepare(train),
            eval_dataset={name: prepare(ds) for name, ds in eval_sets.items()},
            data_collator=DataCollatorWithPadding(tokenizer),
            **common,
        )
        return trainer, prepare
    teacher_path = args.model.agora_teacher
    check_model_source(teacher_path, "--agora_teacher")
    teacher = (
        load_checkpoint(AutoModelForSequenceClassification, teacher_path, "--agora_teacher"),  # its head, trained
        AutoTokenizer.from_pretrained(teacher_path),
    )
    trainer = AgoraTrainer(
        args=build_training_arguments(args, task, AgoraArguments),
        train_dataset=train,
        agora_dev_dataset=eval_sets["dev"],
        agora_selection_dataset=eval_sets.get("selection"),
        agora_held_out_dataset=held_out,
        teacher=teacher,
        eval_dataset=eval_sets,
        **common,
    )
    return trainer, lambda ds: ds  # AgoraTrainer tokenises raw rows itself


def collapse_warning(split: str, logits: np.ndarray | tuple, labels: np.ndarray, task: TextTask) -> str | None:
    """A warning when a classifier predicts one class for every row of a split that holds several: it learned the
    class balance, not the task, which a score such as Matthews correlation 0.000 or MRPC's F1 does not say."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    predicted = np.unique(np.argmax(logits, axis=-1))
    if task.is_regression or len(predicted) > 1 or len(np.unique(labels)) < 2:
        return None
    name = task.label_names[predicted[0]]
    return (
        f"On {split} the model predicts {name!r} for all {len(labels)} rows ({np.mean(labels == predicted[0]):.1%} "
        f"of them are {name!r}): its predictions collapsed to one class, so its scores measure the class balance, "
        "not the task. Train longer, with another learning rate, or on more rows."
    )


def data_source(task: TextTask, data: DataTrainingArguments) -> str | dict[str, dict[str, str]]:
    """What the rows were read from: the Hub's `nyu-mll/glue`, or the local files, by split."""
    if isinstance(task, GlueTask) and data.data_dir is None:
        return "nyu-mll/glue"
    if isinstance(task, GlueTask):
        files = glue_files(task.name, data.data_dir, splits=("train", *task.dev_splits))
    else:
        files = {"train": data.train_file, "validation": data.validation_file, "test": data.test_file}
    return {"files": {split: str(path) for split, path in files.items() if path is not None}}


def _official_metrics(output: dict[str, float], prefix: str, task: TextTask) -> dict[str, float]:
    return {name: output[f"{prefix}_{name}"] for name in (*task.metrics, "loss")}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model_args, data_args, training_args = args
    check_model_source(model_args.model_name_or_path, "--model_name_or_path")
    settings, resume = _run_settings(args), _resume(args)
    check_output_dir(
        training_args.output_dir, "glue.py", settings, overwrite=data_args.overwrite_output_dir, resume=resume,
        overwrite_flag="--overwrite_output_dir", resume_flag="--resume_from_checkpoint True",
    )  # fmt: skip
    checkpoint = find_checkpoint(args)
    task, raw = load_data(args)
    record_run(training_args.output_dir, "glue.py", settings, resume)  # every input read: the folder is now the run's
    set_seed(training_args.seed)

    train, eval_sets, reported = load_splits(task, raw, args)
    tokenizer_source = model_args.tokenizer_name or model_args.model_name_or_path
    check_model_source(tokenizer_source, "--tokenizer_name")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    model = load_model(args, task)
    held_out = [raw[name] for name in task.dev_splits if name in raw]  # whole, whatever --max_eval_samples scores
    trainer, prepare = build_trainer(args, task, model, tokenizer, train, eval_sets, held_out)
    started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    train_seconds = time.perf_counter() - started
    metrics, warnings = {}, []
    for name, ds in reported.items():
        output = trainer.predict(prepare(ds), metric_key_prefix=name)
        trainer.log(output.metrics)
        metrics[name] = _official_metrics(output.metrics, name, task)
        warnings.append(collapse_warning(name, output.predictions, output.label_ids, task))
    trainer.save_model()
    if not trainer.is_world_process_zero():
        return {}
    warnings = [warning for warning in warnings if warning is not None]
    for warning in warnings:
        logger.warning(warning)

    first_reported = reported[next(n for n in reported if n != "dev")]
    results = {
        "task": task.name,
        "data": data_source(task, data_args),
        "model": model_args.model_name_or_path,
        "lora": model_args.lora,
        "agora": model_args.agora,
        "official_dev_is": "test" if model_args.agora else "validation",
        "num_processes": trainer.args.world_size,
        "rows": {"train": len(train), **{name: len(ds) for name, ds in reported.items()}},
        "metrics": metrics,
        "warnings": warnings,
        "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "train_seconds": round(train_seconds, 1),
        "train_loss": train_output.training_loss,
        "cpu_latency_ms": round(
            cpu_latency_ms(trainer.model, tokenizer, first_reported, task, data_args.max_seq_length), 2
        ),
        "hyperparameters": {
            "learning_rate": training_args.learning_rate,
            "num_train_epochs": training_args.num_train_epochs,
            "max_length": data_args.max_seq_length,
            "per_device_train_batch_size": training_args.per_device_train_batch_size,
            "seed": training_args.seed,
            "max_train_samples": data_args.max_train_samples,
        },
    }
    if model_args.lora:
        results["hyperparameters"].update(
            lora_r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_target_modules=model_args.lora_target_modules,
        )
    if model_args.agora:
        results["agora_rounds"] = len(trainer.agora_history)
        results["agora_teacher"] = model_args.agora_teacher
        results["agora_history"] = [dataclasses.asdict(step) for step in trainer.agora_history]
        results["agora_selected_by"] = trainer.agora_selected_by
        tolerance = trainer.args.agora_selection_tolerance  # inf: the last round (JSON has no inf, so null here)
        results["agora_selection_tolerance"] = None if math.isinf(tolerance) else tolerance
        results["agora_best_round"] = trainer.agora_state.best["round"]
        results["agora_teacher_report"] = trainer.agora_teacher_report
        results["agora_metric"] = trainer.args.agora_metric
        results["agora_sampler"] = trainer.args.agora_sampler
        results["agora_labels_spent"] = trainer.agora_state.labels_spent
        if "warning" in trainer.agora_teacher_report:
            results["warnings"].append(trainer.agora_teacher_report["warning"])
    output_dir = Path(training_args.output_dir)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    card_kwargs = {"lora": model_args.lora, "num_parameters": results["num_parameters"]}
    if isinstance(task, GlueTask):  # the card template describes GLUE results
        save_model_card(output_dir, results=results, config=trainer.model.config, **card_kwargs)
    print(json.dumps({"task": task.name, "metrics": metrics, "num_processes": results["num_processes"]}, indent=2))
    if training_args.push_to_hub:
        trainer.push_to_hub()
        if isinstance(task, GlueTask):
            save_model_card(
                output_dir, results=results, config=trainer.model.config, push_to=trainer.hub_model_id, **card_kwargs
            )
    return results


if __name__ == "__main__":
    raise SystemExit(run_main(main, "glue.py"))
