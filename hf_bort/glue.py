"""The nine GLUE tasks: their columns, labels, metrics and fine-tuning defaults, loaded from the Hub or a local folder.

`GLUE_TASKS` is the one registry of task facts: the recipe's per-task defaults and the model card's title read it. The
metrics each task reports are in `hf_bort.metrics.scores.GLUE_METRICS`, beside their definitions, where the `evaluate`
module `metrics/glue_metric.py` reads them too. To add a task, add one `GlueTask` row here and its metrics there.

Both sources give the same `datasets.DatasetDict`, with the column names and split names of the Hub's
`nyu-mll/glue` (`train`, `validation`, `test`; MNLI has `validation_matched`/`_mismatched` and
`test_matched`/`_mismatched`). Unlabelled test rows carry label -1, as on the Hub.

Local files are read strictly: an empty, header-only or non-UTF-8 file is an error naming the file. Rows with too
few fields (GLUE's own processors skip the few malformed rows of QQP/MNLI) are skipped with a warning that gives the
count and the file, up to `MAX_MALFORMED_TRAIN_FRACTION` of a train file; past that, or for any row of a
validation/test file (whose rows are scored or submitted one by one), loading stops with an error.
"""

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from .metrics.scores import GLUE_METRICS


logger = logging.getLogger(__name__)

# A train file may lose at most this fraction of its rows to malformed lines before loading refuses it.
MAX_MALFORMED_TRAIN_FRACTION = 0.01


@dataclass(frozen=True)
class TextTask:
    """A text classification or regression task: what training and scoring need to know. GLUE's tasks are the rows of
    `GLUE_TASKS`; `recipes/glue.py` makes one of data files, whose training labels decide classes or scores, and
    scores it as GLUE scores SST-2 (classes) or STS-B (scores)."""

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...] | None  # None for regression

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def metric_config(self) -> str:
        """The configuration of hf_bort's GLUE metric (`hf_bort.metrics`) that scores this task."""
        return "stsb" if self.is_regression else "sst2"

    @property
    def metrics(self) -> tuple[str, ...]:
        return GLUE_METRICS[self.metric_config]

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def dev_splits(self) -> tuple[str, ...]:
        """The labelled splits a model of this task is scored on."""
        return ("validation",)


@dataclass(frozen=True)
class GlueTask(TextTask):
    """A GLUE task: how it is laid out on the Hub and in the original distribution folder, and its fine-tuning
    defaults."""

    folder: str
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
    def metric_config(self) -> str:
        return self.name

    @property
    def dev_splits(self) -> tuple[str, ...]:
        return tuple(split for split, _ in self.splits if split.startswith("validation"))


GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask(
            "cola",
            ("sentence",),
            ("unacceptable", "acceptable"),
            folder="CoLA",
            tsv_text=(3,),
            tsv_label=1,
            test_text=("sentence",),
            headerless=("train", "dev"),
            max_seq_length=64,
        ),
        GlueTask(
            "sst2",
            ("sentence",),
            ("negative", "positive"),
            folder="SST-2",
            tsv_text=("sentence",),
            tsv_label="label",
            max_seq_length=64,
        ),
        GlueTask(
            "mrpc",
            ("sentence1", "sentence2"),
            ("not_equivalent", "equivalent"),
            folder="MRPC",
            tsv_text=("#1 String", "#2 String"),
            tsv_label="Quality",
            num_train_epochs=5,
        ),
        GlueTask(
            "stsb",
            ("sentence1", "sentence2"),
            None,
            folder="STS-B",
            tsv_text=("sentence1", "sentence2"),
            tsv_label="score",
            num_train_epochs=5,
        ),
        GlueTask(
            "qqp",
            ("question1", "question2"),
            ("not_duplicate", "duplicate"),
            folder="QQP",
            tsv_text=("question1", "question2"),
            tsv_label="is_duplicate",
        ),
        GlueTask(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            folder="MNLI",
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
            ("question", "sentence"),
            ("entailment", "not_entailment"),
            folder="QNLI",
            tsv_text=("question", "sentence"),
            tsv_label="label",
            tsv_label_values=("entailment", "not_entailment"),
        ),
        GlueTask(
            "rte",
            ("sentence1", "sentence2"),
            ("entailment", "not_entailment"),
            folder="RTE",
            tsv_text=("sentence1", "sentence2"),
            tsv_label="label",
            tsv_label_values=("entailment", "not_entailment"),
            num_train_epochs=5,
        ),
        GlueTask(
            "wnli",
            ("sentence1", "sentence2"),
            ("not_entailment", "entailment"),
            folder="WNLI",
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
    """Header and data rows of a GLUE TSV; a file that is not UTF-8 text or holds no data row is a clear error."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(
            f"{path} is not a UTF-8 tab-separated text file ({error}); put the original GLUE file there."
        ) from error
    if headerless:
        header = None
    else:
        header, rows = (rows[0], rows[1:]) if rows else (None, [])
    if not rows:
        what = "is empty" if header is None else "has a header line but no data rows"
        raise ValueError(f"{path} {what}; put the original GLUE file there (re-download or re-extract it).")
    return header, rows


def _column(header: list[str] | None, key: str | int, path: Path) -> int:
    if isinstance(key, int):
        return key
    if header is None or key not in header:
        raise ValueError(f"{path} has no column {key!r} (header: {header}); is this the original GLUE layout?")
    return header.index(key)


def _parse_label(task: GlueTask, raw: str, path: Path) -> int | float:
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{path} has score {raw!r}, not a number; GLUE {task.name} labels are floats.") from None
    values = task.tsv_label_values or tuple(str(i) for i in range(task.num_labels))
    if raw not in values:
        raise ValueError(f"{path} has label {raw!r}, which GLUE {task.name} does not have (expected one of {values}).")
    return values.index(raw)


def _report_malformed(path: Path, split: str, lines: list[int], total: int, width: int) -> None:
    """Warn about skipped rows of a train file; refuse past the threshold, or any in a validation/test file."""
    if not lines:
        return
    shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
    message = f"{path}: {len(lines)} of {total} rows have fewer than {width} tab-separated fields (data rows {shown})"
    if split != "train" or len(lines) > MAX_MALFORMED_TRAIN_FRACTION * total:
        limit = "any row" if split != "train" else f"more than {MAX_MALFORMED_TRAIN_FRACTION:.0%} of the rows"
        raise ValueError(
            f"{message}; {split} files may not lose {limit}. Fix those lines or re-download the original GLUE file."
        )
    logger.warning(f"{message}; skipping them, as GLUE's own processors do.")


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
    malformed = []
    for number, row in enumerate(rows, start=1):
        if len(row) < width and (label_idx is None or len(row) <= max(text_idx + [label_idx])):
            malformed.append(number)  # GLUE's own processors skip the few malformed rows of QQP/MNLI
            continue
        for name, i in zip(task.text_columns, text_idx):
            columns[name].append(row[i])
        if label_idx is None:
            columns["label"].append(-1)
        else:
            columns["label"].append(_parse_label(task, row[label_idx], path))
        columns["idx"].append(len(columns["idx"]))
    _report_malformed(path, split, malformed, len(rows), width)
    features = {name: datasets.Value("string") for name in task.text_columns}
    if task.is_regression:
        features["label"] = datasets.Value("float32")
    else:
        features["label"] = datasets.ClassLabel(names=list(task.label_names))
        if is_test:
            features["label"] = datasets.Value("int64")
    features["idx"] = datasets.Value("int32")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def glue_files(
    task: str | GlueTask, data_dir: str | os.PathLike, splits: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """The files `load_glue(task, data_dir, splits)` reads, by split: what a results file or card must name as the data.

    `data_dir` is the folder holding `<TASK>/` subfolders (e.g. `../shared/data/glue`) or the task folder itself.
    `splits` restricts what is read (default: every split whose file exists).
    """
    task = task if isinstance(task, GlueTask) else get_task(task)
    root = Path(data_dir)
    folder = root / task.folder if (root / task.folder).is_dir() else root
    wanted = dict(task.splits) if splits is None else {s: dict(task.splits).get(s) for s in splits}
    files = {}
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
        files[split] = path
    return files


def load_glue(
    task: str | GlueTask, data_dir: str | os.PathLike | None = None, splits: tuple[str, ...] | None = None
) -> datasets.DatasetDict:
    """Load a GLUE task from a local folder in the original layout (see `glue_files`), or from the Hub's
    `nyu-mll/glue`. `splits` restricts what is read (default: every split whose file exists, all on the Hub)."""
    task = task if isinstance(task, GlueTask) else get_task(task)
    if data_dir is None:
        loaded = datasets.load_dataset("nyu-mll/glue", task.name)
        return loaded if splits is None else datasets.DatasetDict({s: loaded[s] for s in splits})
    files = glue_files(task, data_dir, splits)
    return datasets.DatasetDict({split: _load_local_split(task, path, split) for split, path in files.items()})


__all__ = ["GLUE_TASKS", "GlueTask", "TextTask", "get_task", "glue_files", "load_glue"]
