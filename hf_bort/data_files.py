"""A user's labelled text files (CSV, TSV, JSON lines) read strictly, with the task they describe inferred once.

`datasets.load_dataset("csv" | "json")` reports a broken JSON line or an empty file as "An error occurred while
generating the dataset", and infers each file's label type on its own: one typo `pos` among `0`/`1` labels silently
makes a 3-class task, one `0.5` silently makes a regression. Here every problem names the file and its lines, and the
label column of the training file decides the task:

- every label an integer, or every label text: classification over the values seen (integers in numeric order);
- numbers, some written with a decimal point or exponent: regression (write every score as `1.0` to say so);
- numbers and text mixed, a missing label, decimals on at most `STRAY_FRACTION` of the rows among integer labels, or a
  class held by a single row of a file of at least `1 / STRAY_FRACTION` rows: refused, naming the rows.

Other files (validation, test) are checked against that task: a label the training file does not have is refused.
"""

import csv
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import check_input_file


DELIMITERS = {".csv": ",", ".tsv": "\t"}
SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
# A kind of label value (or a class) held by at most this fraction of the rows is a stray, not part of the task.
STRAY_FRACTION = 0.01
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Table:
    """The rows of one file: column names, one dict per row, and each row's line number in the file."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]

    def column(self, name: str) -> list[Any]:
        return [row[name] for row in self.rows]


def _where(lines: list[int], shown: dict[int, Any] | None = None) -> str:
    """ "lines 3, 8 ('pos', 'neg')": at most five, with their values when `shown` (line -> value) is given."""
    text = f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:5]))}{', ...' if len(lines) > 5 else ''}"
    return text if shown is None else f"{text} ({', '.join(repr(shown[line]) for line in lines[:5])})"


def read_table(path: str | os.PathLike, role: str) -> Table:
    """Every row of a CSV, TSV or JSON-lines (`.json` or `.jsonl`) file.

    CSV/TSV values are kept as text; a row with another number of fields than the header is refused, naming its
    line, as is a JSON line that does not parse or is not an object, or an object without the first row's keys.
    """
    path = check_input_file(path, role, "pass a .csv, .tsv or .json(l) file with a header (or keys) and rows.")
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{role} {path} is not .csv, .tsv, .json or .jsonl; convert it to one of these.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{role} {path} is not UTF-8 text ({error}); save it as UTF-8.") from None
    if path.suffix.lower() in DELIMITERS:
        return _read_csv(path, role, text, DELIMITERS[path.suffix.lower()])
    return _read_json(path, role, text)


def _read_csv(path: Path, role: str, text: str, delimiter: str) -> Table:
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    records = [(reader.line_num, row) for row in reader if row]
    if not records:
        raise ValueError(f"{role} {path} holds no rows (blank lines only); pass a file with a header and rows.")
    (_, columns), records = records[0], records[1:]
    if not records:
        raise ValueError(f"{role} {path} has a header line but no data rows; add the rows.")
    malformed = [line for line, row in records if len(row) != len(columns)]
    if malformed:
        raise ValueError(
            f"{role} {path}: {len(malformed)} of {len(records)} rows do not have the header's {len(columns)} fields "
            f"({_where(malformed)}); quote fields that hold the delimiter, or fix those lines."
        )
    return Table(path, columns, [dict(zip(columns, row)) for _, row in records], [line for line, _ in records])


def _read_json(path: Path, role: str, text: str) -> Table:
    if text.lstrip().startswith("["):
        raise ValueError(f"{role} {path} holds a JSON array; write one JSON object per line (JSON lines) instead.")
    items, lines = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{role} {path}: line {number} is not valid JSON ({error.msg} at column {error.colno}); each line "
                "must be one JSON object."
            ) from None
        if not isinstance(item, dict):
            raise ValueError(f"{role} {path}: line {number} is not a JSON object; give each row as {{...}}.")
        items.append(item)
        lines.append(number)
    if not items:
        raise ValueError(f"{role} {path} holds no rows (blank lines only); pass one JSON object per line.")
    columns = list(items[0])
    incomplete = [line for line, item in zip(lines, items) if not set(columns) <= set(item)]
    if incomplete:
        raise ValueError(
            f"{role} {path}: keys of the first row ({columns}) are missing on {_where(incomplete)}; give every row "
            "every key."
        )
    return Table(path, columns, [{c: item[c] for c in columns} for item in items], lines)


def _kind(value: Any) -> str:
    """The kind of one label: integer, decimal (a number written with a point or exponent), text or missing."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "text"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "decimal" if math.isfinite(value) else "text"
    text = str(value).strip()
    if not text:
        return "missing"
    if _INTEGER.fullmatch(text):
        return "integer"
    try:
        return "decimal" if math.isfinite(float(text)) else "text"
    except ValueError:
        return "text"


def _label_name(value: Any) -> str:
    """A class label as text: integers by value (JSON `1` and CSV `"01"` are class `1`), text stripped."""
    return str(int(str(value).strip())) if _kind(value) == "integer" else str(value).strip()


def infer_label_names(table: Table, column: str = "label") -> tuple[str, ...] | None:
    """The task the training file's labels describe: its class names, or None for regression (see the module)."""
    values, where = table.column(column), f"The label column of {table.path}"
    by_kind: dict[str, list[int]] = {}
    for line, value in zip(table.lines, values):
        by_kind.setdefault(_kind(value), []).append(line)
    shown = {line: value for line, value in zip(table.lines, values)}
    if "missing" in by_kind:
        raise ValueError(f"{where} is empty on {_where(by_kind['missing'])}; give every row a label or drop it.")
    numbers = sorted(by_kind.get("integer", []) + by_kind.get("decimal", []))
    if numbers and "text" in by_kind:
        text = by_kind["text"]
        odd, kinds = (text, ("text", "numbers")) if len(text) <= len(numbers) else (numbers, ("numbers", "text"))
        raise ValueError(
            f"{where} mixes numbers and text: {len(odd)} rows of {kinds[0]} among {len(values) - len(odd)} rows of "
            f"{kinds[1]} ({_where(odd, shown)}). Fix those rows: every label a class name, or "
            "every label a number."
        )
    if "decimal" in by_kind:
        decimals = by_kind["decimal"]
        if "integer" in by_kind and len(decimals) <= max(1, STRAY_FRACTION * len(values)):
            raise ValueError(
                f"{where} holds integer classes except {_where(decimals, shown)}: a "
                "stray value would silently turn the classification into a regression. Fix those rows; for "
                "regression scores, write every label with a decimal point (1.0)."
            )
        return None
    names = [_label_name(value) for value in values]
    counts = Counter(names)
    single = [line for line, name in zip(table.lines, names) if counts[name] == 1]
    if single and len(values) >= 1 / STRAY_FRACTION:
        raise ValueError(
            f"{where} has classes held by a single row of {len(values)} ({_where(single, shown)}): "
            "a typo, or a class no model can learn from one row. Fix or drop those rows."
        )
    if "integer" in by_kind:
        return tuple(str(i) for i in sorted({int(name) for name in counts}))
    return tuple(sorted(counts))


def encode_labels(table: Table, label_names: tuple[str, ...] | None, column: str = "label") -> list[int | float]:
    """Class ids in `label_names` order (None: float scores), refusing a label the task does not have, by line."""
    values = table.column(column)
    if label_names is None:
        bad = [line for line, value in zip(table.lines, values) if _kind(value) not in ("integer", "decimal")]
        if bad:
            raise ValueError(
                f"The label column of {table.path} is not a number on {_where(bad)}; this is a regression task (the "
                "training file's labels are scores), so give every row a score."
            )
        return [float(value) for value in values]
    ids = {name: i for i, name in enumerate(label_names)}
    names = ["" if _kind(value) == "missing" else _label_name(value) for value in values]
    unknown = [(line, name) for line, name in zip(table.lines, names) if name not in ids]
    if unknown:
        raise ValueError(
            f"The label column of {table.path} holds labels the training file does not have "
            f"({_where([line for line, _ in unknown], dict(unknown))}; its labels: {list(label_names)}); fix the data."
        )
    return [ids[name] for name in names]


__all__ = ["STRAY_FRACTION", "SUFFIXES", "Table", "encode_labels", "infer_label_names", "read_table"]
