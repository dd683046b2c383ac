"""`hf-bort compress`: a model fine-tuned on a task to the most accurate student that meets a speed budget.

The flags are the fields of `CompressDataArguments` (the parent and the data) and `CompressConfig` (the budget, the
search, the recovery), parsed by `HfArgumentParser`, so every option is defined, with its help, exactly once.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields


@dataclass
class CompressDataArguments:
    """What `hf-bort compress` reads: the fine-tuned parent, and the task's rows (a GLUE task or your own files)."""

    model: str = field(metadata={"help": "The parent: a folder (or Hub id) of a model fine-tuned on the task."})
    task_name: str | None = field(default=None, metadata={"help": "A GLUE task (sst2, mrpc, rte, stsb, ...)."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Folder with GLUE in the original layout (default: the Hub's nyu-mll/glue)."}
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "Your training rows (.csv/.tsv/.jsonl with a label column), read as glue.py does."},
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Rows to score parent and student on (never trained or chosen on)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})

    def __post_init__(self):
        if (self.task_name is None) == (self.train_file is None):
            raise ValueError("Pass exactly one of --task_name (a GLUE task) or --train_file (your own rows).")


def _rows(data: CompressDataArguments):
    """(train, eval, metric): a GLUE task's train and official dev splits with its metric, or the user's files."""
    import datasets

    from ..data_files import encode_labels, infer_label_names, read_table

    if data.task_name is not None:
        from ..glue import get_task, load_glue

        task = get_task(data.task_name)
        validation = next(name for name, _ in task.splits if name.startswith("validation"))  # MNLI: _matched
        loaded = load_glue(task, data.data_dir, splits=("train", validation))
        return loaded["train"], loaded[validation], task.main_metric
    table = read_table(data.train_file, "--train_file")
    names = infer_label_names(table)
    tables = {"train": table}
    if data.validation_file is not None:
        tables["eval"] = read_table(data.validation_file, "--validation_file")
    rows = {}
    for split, part in tables.items():
        columns = {name: part.column(name) for name in part.columns if name != "label"}
        rows[split] = datasets.Dataset.from_dict({**columns, "label": encode_labels(part, names)})
    return rows["train"], rows.get("eval"), None


def add_compress_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `compress` on the `hf-bort` parser; the handler is `run_compress`."""
    from ..compression import CompressConfig

    parser = subparsers.add_parser(
        "compress",
        dataclass_types=(CompressDataArguments, CompressConfig),
        help="Compress a fine-tuned model to the most accurate student that meets a speed budget.",
        description="Search the parent's heads, FFN widths and layers (OSE), choose the best student measured to meet "
        "--min_speedup, distil it from the parent, and write it with its tokenizer, results.json and a model card "
        "to --output_dir (resumable).",
    )
    parser.set_defaults(func=run_compress)
    return parser


def run_compress(args: argparse.Namespace) -> int:
    from ..compression import CompressConfig, compress
    from ..errors import check_model_source

    data = CompressDataArguments(**{f.name: getattr(args, f.name) for f in fields(CompressDataArguments)})
    config = CompressConfig(**{f.name: getattr(args, f.name) for f in fields(CompressConfig) if f.init})
    check_model_source(data.model, "--model")
    train, evaluation, metric = _rows(data)
    if data.max_train_samples is not None:
        train = train.shuffle(seed=config.seed).select(range(min(data.max_train_samples, len(train))))
    result = compress(data.model, train, evaluation, config, metric=metric)
    if result.results is not None:
        r = result.results
        share = f", {100 * r['share_of_parent']:.1f}% of the parent's {r['metric']}" if "share_of_parent" in r else ""
        print(
            f"Student {r['architecture']} written to {result.output_dir / 'model'}: {r['speedup']['speedup']:.2f}x "
            f"faster than the parent (measured){share}."
        )
    return 0


__all__ = ["CompressDataArguments", "add_compress_subcommand", "run_compress"]
