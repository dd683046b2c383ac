"""The nine GLUE tasks: their columns, labels, metrics and fine-tuning defaults, loaded from the Hub or a local folder.

`GLUE_TASKS` is the one registry of task facts: the recipe's per-task defaults, the model card's title and the
metrics all read it (the `evaluate` module in `metrics/glue_metric.py` keeps its own copy of the metric names, as
`evaluate` loads it without hf_bort; a test checks the two agree). To add a task, add one `GlueTask` row here.

Both sources give the same `datasets.DatasetDict`, with the column names and split names of the Hub's
`nyu-mll/glue` (`train`, `validation`, `test`; MNLI has `validation_matched`/`_mismatched` and
`test_matched`/`_mismatched`). Unlabelled test rows carry label -1, as on the Hub.
"""

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import datasets


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task is laid out on the Hub and in the original distribution folder."""

    name: str
    folder: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None  # None for regression (STS-B)
    metrics: tuple[str, ...]
    # local layout: column in the TSV for each text column and for the label; None = no header, use indices
    tsv_text: tuple[str | int, ...]
    tsv_label: str | int
    tsv_label_values: tuple[str, ...] | None = None  # raw label strings in label-id order, when not 0..n-1
    splits: tuple[tuple[str, str], ...] = (("train", "train"), ("validation", "dev"), ("test", "test"))
    test_text: tuple[str | int, ...] | None = None  # test files of some tasks name their columns differently
    headerless: tuple[str, ...] = ()  # files with no header line
    # fine-tuning defaults of recipes/glue.py (BERT-paper style: small or noisy tasks get more epochs)
    num_train_epochs: float = 3
    max_seq_length: int = 128
    learning_rate: float = 3e-5

    @property
    def title(self) -> str:
        """The task's name as GLUE writes it (`SST-2`, `STS-B`), which is also its folder's name."""
        return self.folder

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "cola",
            "CoLA",
            ("sentence",),
            ("unacceptable", "acceptable"),
            ("matthews_correlation",),
            tsv_text=(3,),
            tsv_label=1,
            test_text=("sentence",),
            headerless=("train", "dev"),
            max_seq_length=64,
        ),
        GlueTask(
            "sst2",
            "SST-2",
            ("sentence",),
            ("negative", "positive"),
            ("accuracy",),
            ("sentence",),
            "label",
            max_seq_length=64,
        ),
        GlueTask(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            ("accuracy", "f1"),
            tsv_text=("#1 String", "#2 String"),
            tsv_label="Quality",
            num_train_epochs=5,
        ),
        GlueTask(
            "stsb",
            "STS-B",
            ("sentence1", "sentence2"),
            None,
            ("pearson", "spearmanr"),
            tsv_text=("sentence1", "sentence2"),
            tsv_label="score",
            num_train_epochs=5,
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            ("accuracy", "f1"),
            tsv_text=("question1", "question2"),
            tsv_label="is_duplicate",
        ),
        GlueTask(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            tsv_text=("sentence1", "sentence2"),
            tsv_label="gold_label",
            tsv_label_values=("entailment", "neutral", "contradiction"),
            splits=(
                ("train", "train"),
                ("validation_matched", "dev_matched"),
                ("validation_mismatched", "dev_mismatched"),
                ("test_matched", "test_matched"),
                ("test_mismatched", "test_mismatched"),
            ),
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            tsv_text=("question", "sentence"),
            tsv_label="label",
            tsv_label_values=("entailment", "not_entailment"),
        ),
        GlueTask(
            "rte",
            "RTE",
            ("sentence1", "sentence2"),
            ("entailment", "not_entailment"),
            ("accuracy",),
            tsv_text=("sentence1", "sentence2"),
            tsv_label="label",
            tsv_label_values=("entailment", "not_entailment"),
            num_train_epochs=5,
        ),
        GlueTask(
            "wnli",
            "WNLI",
            ("sentence1", "sentence2"),
            ("not_entailment", "entailment"),
            ("accuracy",),
            tsv_text=("sentence1", "sentence2"),
            tsv_label="label",
        ),
    )
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> GlueTask:
    """Look a task up by any common spelling (`SST-2`, `sst2`, `sts-b`...); unknown names raise a clear error."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task {name!r}. Choose one of: {', '.join(GLUE_TASKS)}.")
    return GLUE_TASKS[key]


def _read_tsv(path: Path, headerless: bool) -> tuple[list[str] | None, list[list[str]]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if headerless:
        return None, rows
    return rows[0], rows[1:]


def _column(header: list[str] | None, key: str | int, path: Path) -> int:
    if isinstance(key, int):
        return key
    if header is None or key not in header:
        raise ValueError(f"{path} has no column {key!r} (header: {header}); is this the original GLUE layout?")
    return header.index(key)


def _parse_label(task: GlueTask, raw: str, path: Path) -> int | float:
    if task.is_regression:
        return float(raw)
    values = task.tsv_label_values or tuple(str(i) for i in range(task.num_labels))
    if raw not in values:
        raise ValueError(f"{path} has label {raw!r}, which GLUE {task.name} does not have (expected one of {values}).")
    return values.index(raw)


def _load_local_split(task: GlueTask, path: Path, split: str) -> datasets.Dataset:
    file_stem = path.stem
    header, rows = _read_tsv(path, headerless=file_stem in task.headerless)
    is_test = split.startswith("test")
    text_keys = task.test_text if (is_test and task.test_text) else task.tsv_text
    text_idx = [_column(header, key, path) for key in text_keys]
    label_idx = None
    if not is_test:
        label_idx = _column(header, task.tsv_label, path)
    width = len(header) if header is not None else max(len(r) for r in rows)
    columns: dict[str, list] = {name: [] for name in task.text_columns}
    columns["label"] = []
    columns["idx"] = []
    for row in rows:
        if len(row) < width and (label_idx is None or len(row) <= max(text_idx + [label_idx])):
            continue  # GLUE's own processors skip the few malformed rows of QQP/MNLI
        for name, i in zip(task.text_columns, text_idx):
            columns[name].append(row[i])
        if label_idx is None:
            columns["label"].append(-1)
        else:
            columns["label"].append(_parse_label(task, row[label_idx], path))
        columns["idx"].append(len(columns["idx"]))
    features = {name: datasets.Value("string") for name in task.text_columns}
    if task.is_regression:
        features["label"] = datasets.Value("float32")
    else:
        features["label"] = datasets.ClassLabel(names=list(task.label_names))
        if is_test:
            features["label"] = datasets.Value("int64")
    features["idx"] = datasets.Value("int32")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def load_glue(
    task: str | GlueTask, data_dir: str | os.PathLike | None = None, splits: tuple[str, ...] | None = None
) -> datasets.DatasetDict:
    """Load a GLUE task from a local folder in the original layout, or from the Hub's `nyu-mll/glue`.

    `data_dir` is the folder holding `<TASK>/` subfolders (e.g. `../shared/data/glue`) or the task folder
    itself. `splits` restricts what is read (default: every split whose file exists, all on the Hub).
    """
    task = task if isinstance(task, GlueTask) else get_task(task)
    if data_dir is None:
        loaded = datasets.load_dataset("nyu-mll/glue", task.name)
        return loaded if splits is None else datasets.DatasetDict({s: loaded[s] for s in splits})
    root = Path(data_dir)
    folder = root / task.folder if (root / task.folder).is_dir() else root
    wanted = dict(task.splits) if splits is None else {s: dict(task.splits).get(s) for s in splits}
    result = {}
    for split, stem in wanted.items():
        if stem is None:
            raise ValueError(f"GLUE {task.name} has no split {split!r}; its splits are {[s for s, _ in task.splits]}.")
        path = folder / f"{stem}.tsv"
        if not path.is_file():
            if splits is None and split.startswith("test"):
                continue
            where = "" if folder != root else f" (and there is no {task.folder}/ folder in {root})"
            raise FileNotFoundError(
                f"GLUE {task.name}: split {split!r} expected at {path}, which does not exist{where}. Put the "
                f"original GLUE file {task.folder}/{stem}.tsv there, or drop --data_dir to load nyu-mll/glue from "
                "the Hub."
            )
        result[split] = _load_local_split(task, path, split)
    return datasets.DatasetDict(result)


__all__ = ["GLUE_TASKS", "GlueTask", "get_task", "load_glue"]
