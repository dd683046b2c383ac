"""Pool samplers: real unlabelled text near Agora's dev errors, instead of token edits of the errors.

People who fine-tune small models usually have far more unlabelled in-domain text than labels (the rest of a train
split, logs, the task's unlabelled test set). `PoolSampler` ("pool") returns, for each dev error, the k pool rows
nearest to it in a representation space, so the teacher labels fluent, real rows where the student errs:

- the space: the mean-pooled last hidden states of the student as it is now (the default; the pool is embedded again
  at every expansion, since training moves the space), or of a fixed `encoder` you name (embedded once; or pass
  precomputed `embeddings`);
- the search: cosine similarity, exact, either by a matrix product in torch (`index="exact"`) or with faiss's
  `IndexFlatIP` (`index="faiss"`, the `[faiss]` extra; `datasets.Dataset.add_faiss_index` builds the same index);
  `"auto"` picks by `FAISS_FROM_QUERIES` (measured in the README: both are milliseconds next to embedding the pool);
- rows already in train, dev or selection are left out of the pool, rows already taken are excluded at every call,
  and errors take their neighbours in turns (every error's nearest first), so no row serves two errors.

`UncertaintyPoolSampler` ("pool_uncertainty": the rows the student is least sure of, smallest margin between its two
most likely classes) and `RandomPoolSampler` ("pool_random") are the active-learning baselines on the same pool; they
ignore where the errors are.

A pool that holds rows of the set the model is scored on (`AgoraTrainer(agora_held_out_dataset=...)`) is refused:
that would leak the test. Nothing a user passes is modified, on disk or in memory.
"""

import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from ..errors import check_input_file, load_checkpoint
from ..extras import require
from .data import model_input_names
from .samplers import SAMPLERS, AgoraSampler, row_key
from .teacher import unwrap_classifier


TEXT_SUFFIXES = ("", ".txt", ".raw", ".text")
TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
INDEXES = ("auto", "exact", "faiss")
# With "auto", faiss searches when an expansion has at least this many errors (queries), exact torch search below:
# measured on a 60,000-row pool of 384-dim vectors (README, "The pool sampler"), where faiss overtakes torch.
FAISS_FROM_QUERIES = 256


def load_pool(
    pool: datasets.Dataset | str | os.PathLike, text_columns: tuple[str, ...], pool_columns: list[str] | None = None
) -> list[tuple[str, ...]]:
    """The pool's rows as tuples of the task's text columns, from a `datasets.Dataset` or a file.

    A text file holds one row per line (a pair task's two texts separated by a tab; blank lines are skipped); a
    .csv/.tsv/.json(l) file holds named columns. `pool_columns` names the pool's text columns in the task's order;
    by default the task's own column names, or the only text column(s) of the pool.
    """
    width = len(text_columns)
    if isinstance(pool, datasets.Dataset):
        table, source = {name: pool[name] for name in pool.column_names}, "The Agora pool"
        strings = [
            name
            for name, feature in pool.features.items()
            if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
        ]
    elif isinstance(pool, (str, os.PathLike)):
        path = check_input_file(
            pool, "agora_pool", "pass a text file (one row per line) or a .csv/.tsv/.json(l) file."
        )
        source = f"The Agora pool {path}"
        if path.suffix.lower() in TEXT_SUFFIXES:
            return _read_lines(path, width)
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(
                f"{source} is neither a text file ({', '.join(s for s in TEXT_SUFFIXES if s)}) nor a table "
                f"({', '.join(TABLE_SUFFIXES)}); convert it to one of these."
            )
        from ..data_files import read_table

        read = read_table(path, "agora_pool")
        table = {name: read.column(name) for name in read.columns}
        strings = [name for name in read.columns if all(isinstance(v, str) for v in table[name])]
    else:
        raise TypeError(
            f"agora_pool must be a datasets.Dataset or the path of a file, got {type(pool).__name__}; build a Dataset "
            "with datasets.Dataset.from_dict({'sentence': texts})."
        )
    if pool_columns is None:
        if all(column in table for column in text_columns):
            pool_columns = list(text_columns)
        elif len(strings) == width:
            pool_columns = strings
    if pool_columns is None or len(pool_columns) != width or any(c not in table for c in pool_columns):
        raise ValueError(
            f"{source} has no text column{'s' if width > 1 else ''} for the task's {list(text_columns)} (its "
            f"columns: {list(table)}): name {'them' if width > 1 else 'it'} with pool_columns=[...] in "
            "agora_sampler_kwargs, in the task's order."
        )
    rows = list(zip(*(table[c] for c in pool_columns)))
    bad = next((row for row in rows if not all(isinstance(text, str) for text in row)), None)
    if bad is not None:
        raise ValueError(f"{source} column(s) {pool_columns} hold non-text values such as {bad!r}; give text.")
    return rows


def _read_lines(path: Path, width: int) -> list[tuple[str, ...]]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"The Agora pool {path} is not UTF-8 text ({error}); save it as UTF-8.") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = tuple(line.split("\t")) if width > 1 else (line.strip(),)
        if len(fields) != width:
            raise ValueError(
                f"The Agora pool {path} line {number} has {len(fields)} tab-separated text(s); the task's rows have "
                f"{width}. Write each pair on one line as 'first<TAB>second'."
            )
        rows.append(fields)
    return rows


@torch.no_grad()
def _by_length(model: nn.Module, tokenizer, rows, max_length: int, batch_size: int, reduce) -> torch.Tensor:
    """`reduce(outputs, attention_mask)` of every row in eval mode, batched by length (a pool of short sentences pads
    little), returned in the rows' order; the model's mode is restored."""
    names = model_input_names(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: sum(len(text) for text in rows[i]))
    parts = []
    try:
        for start in range(0, len(order), batch_size):
            batch = [rows[i] for i in order[start : start + batch_size]]
            encoded = tokenizer(
                *map(list, zip(*batch)), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            inputs = {name: encoded[name].to(device) for name in names if name in encoded}
            parts.append(reduce(model(**inputs, output_hidden_states=True), inputs["attention_mask"]).float().cpu())
    finally:
        model.train(was_training)
    out = torch.cat(parts)
    return torch.empty_like(out).index_copy_(0, torch.tensor(order, dtype=torch.long), out)


def embed_rows(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: list[tuple[str, ...]],
    max_length: int,
    batch_size: int = 128,
) -> torch.Tensor:
    """Unit-length mean-pooled last hidden states of `model`, one row per (text or pair) row."""

    def mean_pool(outputs, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        return (outputs.hidden_states[-1].float() * mask).sum(1) / mask.sum(1)

    return nn.functional.normalize(_by_length(model, tokenizer, rows, max_length, batch_size, mean_pool), dim=-1)


def nearest_rows(
    queries: torch.Tensor, pool: torch.Tensor, k: int, available: torch.Tensor, index: str = "exact"
) -> list[list[int]]:
    """For each query, `k` available pool rows by cosine similarity (unit-length vectors), no row serving two queries:
    the queries take their nearest remaining row in turns (first neighbours first), so each gets its own k nearest
    unless an earlier query took one of them.

    Each query's ranking is read to a depth of 2k first, and deeper (doubling) only when a query runs out of it
    while rows remain: the turns only ever read a prefix of each ranking, so the result is the full ranking's."""
    candidates = int(available.sum())
    depth = min(candidates, 2 * k)
    while True:
        ranked = _ranked(queries, pool, depth, available, index)
        out, short = _in_turns_by_rank(ranked, k)
        if not short or depth == candidates:
            return out
        depth = min(candidates, 2 * depth)


def _ranked(queries: torch.Tensor, pool: torch.Tensor, depth: int, available: torch.Tensor, index: str) -> list:
    """The `depth` most similar available rows of each query, most similar first."""
    if depth == 0:
        return [[] for _ in range(len(queries))]
    if index == "faiss":
        faiss = require("faiss")
        search = faiss.IndexFlatIP(pool.shape[1])
        search.add(pool.numpy().astype(np.float32))
        taken = len(available) - int(available.sum())
        _, found = search.search(queries.numpy().astype(np.float32), min(len(available), depth + taken))
        mask = available.numpy()
        return [[int(i) for i in row if i >= 0 and mask[i]][:depth] for row in found]
    ranked = []
    for chunk in queries.split(256):
        scores = chunk @ pool.T
        scores[:, ~available] = float("-inf")
        ranked.extend(scores.topk(depth, dim=-1).indices.tolist())
    return ranked


def _nearest_in_proportion(
    queries: torch.Tensor, pool: torch.Tensor, k: int, available: torch.Tensor, index: str, classes: torch.Tensor
) -> list[list[int]]:
    """`nearest_rows`, with the k x queries rows split over the classes in the available rows' proportions.

    A caller reads the rows in turns (rank 0 of every query, then rank 1, ...) and may keep only the first ones, so
    the turns are given classes such that every prefix of whole ranks is as near the proportions as whole rows allow;
    within a rank the classes rotate over the queries, so each query gets rows of every class. Each class's rows are
    then taken in turns by the queries given that class (every query's nearest of that class first)."""
    n, total = len(queries), k * len(queries)
    if not bool(available.any()):
        return [[] for _ in range(n)]
    counts = torch.bincount(classes[available], minlength=int(classes.max()) + 1).double()
    share, dealt = counts / counts.sum(), torch.zeros(len(counts))
    turn_class = []
    for turn in range(total):  # the class furthest behind its share of the turns so far
        c = int(torch.argmax(share * (turn + 1) - dealt))
        turn_class.append(c)
        dealt[c] += 1
    slots: dict[int, dict[int, list[int]]] = {}  # class -> query -> the ranks at which it takes a row of that class
    for rank in range(k):
        for q in range(n):
            slots.setdefault(turn_class[rank * n + (q + rank) % n], {}).setdefault(q, []).append(rank)
    out: list[list[int | None]] = [[None] * k for _ in range(n)]
    for c, ranks in sorted(slots.items()):
        takers = list(ranks)
        found = nearest_rows(queries[takers], pool, max(map(len, ranks.values())), available & (classes == c), index)
        for q, rows in zip(takers, found):
            for rank, row in zip(ranks[q], rows):
                out[q][rank] = row
    return [[row for row in rows if row is not None] for rows in out]


def _in_turns_by_rank(ranked: list[list[int]], k: int) -> tuple[list[list[int]], bool]:
    """Queries take their next untaken row in turns, k times; also whether one ran out of its ranking."""
    taken: set[int] = set()
    out: list[list[int]] = [[] for _ in ranked]
    cursor = [0] * len(ranked)
    short = False
    for _ in range(k):
        for q, rows in enumerate(ranked):
            while cursor[q] < len(rows) and rows[cursor[q]] in taken:
                cursor[q] += 1
            if cursor[q] < len(rows):
                taken.add(rows[cursor[q]])
                out[q].append(rows[cursor[q]])
            else:
                short = True
    return out, short


class _PoolSampler(AgoraSampler):
    """Rows of an unlabelled pool: loads it, leaves out the run's own rows, refuses held-out ones (`prepare`)."""

    uses_pool = True
    registry_name = "pool"

    def __init__(
        self,
        pool: datasets.Dataset | str | os.PathLike,
        student: nn.Module | None = None,
        student_tokenizer: PreTrainedTokenizerBase | None = None,
        pool_columns: list[str] | None = None,
        max_length: int = 128,
        batch_size: int = 128,
    ):
        self.pool = pool
        self.student = student
        self.student_tokenizer = student_tokenizer
        self.pool_columns = pool_columns
        self.max_length = max_length
        self.batch_size = batch_size
        self.rows: list[tuple[str, ...]] = []
        self.left_out: dict[str, int] = {}

    @classmethod
    def from_agora(
        cls, student: nn.Module, student_tokenizer: PreTrainedTokenizerBase, **kwargs: Any
    ) -> "AgoraSampler":
        """The pool from `agora_pool` (or `AgoraTrainer(agora_pool=)`); token-edit settings do not apply."""
        kwargs.pop("replace_fraction", None)
        kwargs.pop("num_neighbours", None)
        if kwargs.get("pool") is None:
            raise ValueError(
                f"The {cls.registry_name!r} sampler needs an unlabelled pool: --agora_pool FILE, or "
                "AgoraTrainer(agora_pool=dataset)."
            )
        return cls(student=student, student_tokenizer=student_tokenizer, **kwargs)

    def prepare(self, *, text_columns, known_rows, held_out_rows, min_rows) -> None:
        given = load_pool(self.pool, text_columns, self.pool_columns)
        leaked = [row for row in given if row_key(row) in held_out_rows]
        if leaked:
            raise ValueError(
                f"The Agora pool holds {len(leaked)} row(s) of the held-out set the model is scored on, e.g. "
                f"{leaked[0]!r}: training on them would leak the test. Remove them from the pool."
            )
        seen, keep, known = set(), [], 0
        for position, row in enumerate(given):
            key = row_key(row)
            if key in known_rows:
                known += 1
            elif key not in seen:
                seen.add(key)
                keep.append(position)
        self.positions = keep  # where each usable row stands in the pool as given
        self.rows = [given[i] for i in keep]
        self.keys = [row_key(row) for row in self.rows]
        self.left_out = {
            "given": len(given),
            "in_train_dev_or_selection": known,
            "duplicates": len(given) - known - len(keep),
        }
        if len(self.rows) < min_rows:
            raise ValueError(
                f"The Agora pool has {len(self.rows)} usable rows ({len(given)} given; {known} equal to train, dev or "
                f"selection rows and {self.left_out['duplicates']} duplicates left out), fewer than the {min_rows} "
                "one expansion may ask for (samples_per_error, or agora_label_budget): give a larger pool or ask for "
                "fewer rows."
            )

    def _available(self, exclude: set[tuple[str, ...]] | None) -> torch.Tensor:
        """Pool rows not in the current training set."""
        excluded = {row_key(row) for row in exclude or ()}
        return torch.tensor([key not in excluded for key in self.keys], dtype=torch.bool)


class PoolSampler(_PoolSampler):
    """For each dev error, the `num_samples` nearest pool rows by cosine similarity of mean-pooled hidden states.

    `encoder` (a model or a path, with `encoder_tokenizer` or the folder's tokenizer) fixes the space: the pool is
    embedded once (or give `embeddings`, one row per pool row as given). Without it, the space is the student's own,
    as it is at each expansion: the pool is embedded again every time, since training moves it.
    """

    def __init__(
        self,
        pool: datasets.Dataset | str | os.PathLike,
        student: nn.Module | None = None,
        student_tokenizer: PreTrainedTokenizerBase | None = None,
        encoder: str | nn.Module | None = None,
        encoder_tokenizer: PreTrainedTokenizerBase | None = None,
        embeddings: torch.Tensor | np.ndarray | None = None,
        index: str = "auto",
        **kwargs: Any,
    ):
        super().__init__(pool, student, student_tokenizer, **kwargs)
        if index not in INDEXES:
            raise ValueError(f"index={index!r}; choose one of {list(INDEXES)}.")
        if index == "faiss":
            require("faiss")
        self.index = index
        if isinstance(encoder, (str, os.PathLike)):
            path, encoder = str(encoder), load_checkpoint(AutoModel, encoder, "pool sampler encoder")
            if encoder_tokenizer is None:
                encoder_tokenizer = _folder_tokenizer(path, encoder.config.vocab_size)
        if encoder is not None and encoder_tokenizer is None:
            raise ValueError(
                "The pool sampler's encoder is a model instance: pass its tokenizer as encoder_tokenizer=."
            )
        if encoder is None and embeddings is not None:
            raise ValueError("embeddings= are an encoder's vectors of the pool: pass the encoder that made them too.")
        if encoder is None and (student is None or student_tokenizer is None):
            raise ValueError(
                "The pool sampler needs an encoder= (and its tokenizer), or the student and its tokenizer."
            )
        self.encoder, self.encoder_tokenizer = encoder, encoder_tokenizer
        self.given_embeddings = None if embeddings is None else torch.as_tensor(np.asarray(embeddings)).float()
        self.pool_embeddings: torch.Tensor | None = None
        self.row_classes: torch.Tensor | None = None

    def balance_by(self, classes: list[int] | np.ndarray | torch.Tensor) -> None:
        """Draw the rows near the errors in the pool's class proportions from now on: `classes` holds one class per
        usable pool row (`self.rows`, e.g. the teacher's labels of them). Near the errors of a small student the
        neighbours are mostly of the class it misses, which tilts the training set (MRPC, ACTIVE.md update 3)."""
        classes = torch.as_tensor(np.asarray(classes), dtype=torch.long)
        if classes.shape != (len(self.rows),):
            raise ValueError(
                f"balance_by needs one class per usable pool row ({len(self.rows)}), got shape {tuple(classes.shape)}."
            )
        self.row_classes = classes

    def prepare(self, *, text_columns, known_rows, held_out_rows, min_rows) -> None:
        super().prepare(
            text_columns=text_columns, known_rows=known_rows, held_out_rows=held_out_rows, min_rows=min_rows
        )
        self.pool_embeddings = None
        if self.given_embeddings is not None:
            if self.given_embeddings.ndim != 2 or len(self.given_embeddings) != self.left_out["given"]:
                raise ValueError(
                    f"embeddings has shape {tuple(self.given_embeddings.shape)}; it needs one row per pool row as "
                    f"given ({self.left_out['given']})."
                )
            self.pool_embeddings = nn.functional.normalize(self.given_embeddings[self.positions], dim=-1)

    def embed(self, rows: list[tuple[str, ...]]) -> torch.Tensor:
        """Unit-length representations of rows in this sampler's space (the encoder's, else the student's now)."""
        model, tokenizer = (
            (self.encoder, self.encoder_tokenizer)
            if self.encoder is not None
            else (
                self.student,
                self.student_tokenizer,
            )
        )
        return embed_rows(model, tokenizer, rows, self.max_length, self.batch_size)

    def sample(self, examples, num_samples, generator, pair_perturbation="both", exclude=None):
        pool = self.pool_embeddings
        if pool is None:
            pool = self.embed(self.rows)
            if self.encoder is not None:  # a fixed space: embedded once
                self.pool_embeddings = pool
        index = self.index
        if index == "auto":
            index = "faiss" if len(examples) >= FAISS_FROM_QUERIES and _has_faiss() else "exact"
        queries, available = self.embed(examples), self._available(exclude)
        if self.row_classes is None:
            found = nearest_rows(queries, pool, num_samples, available, index)
        else:
            found = _nearest_in_proportion(queries, pool, num_samples, available, index, self.row_classes)
        return [[self.rows[i] for i in rows] for rows in found]


class UncertaintyPoolSampler(_PoolSampler):
    """The pool rows the student is least sure of (smallest margin between its two most likely classes), as many as
    the errors would get: the standard active-learning baseline. The rows do not depend on the errors."""

    targeted = False
    registry_name = "pool_uncertainty"

    def __init__(self, pool, student=None, student_tokenizer=None, **kwargs: Any):
        super().__init__(pool, student, student_tokenizer, **kwargs)
        if student is None or student_tokenizer is None:
            raise ValueError("The uncertainty sampler scores the pool with the student: pass it and its tokenizer.")
        if unwrap_classifier(student).config.num_labels < 2:
            raise ValueError("The uncertainty sampler needs class probabilities; a regression student has none.")

    def margins(self, rows: list[tuple[str, ...]]) -> torch.Tensor:
        """Difference between the student's two largest class probabilities, per row."""

        def margin(outputs, attention_mask):
            top = outputs.logits.float().softmax(-1).topk(2, dim=-1).values
            return top[:, 0] - top[:, 1]

        return _by_length(self.student, self.student_tokenizer, rows, self.max_length, self.batch_size, margin)

    def sample(self, examples, num_samples, generator, pair_perturbation="both", exclude=None):
        candidates = self._available(exclude).nonzero().flatten().tolist()
        margin = self.margins([self.rows[i] for i in candidates])
        order = torch.argsort(margin, stable=True)[: num_samples * len(examples)].tolist()
        return _in_turns([self.rows[candidates[i]] for i in order], len(examples))


class RandomPoolSampler(_PoolSampler):
    """Pool rows drawn at random (the generator's draw), as many as the errors would get: the passive baseline."""

    targeted = False
    registry_name = "pool_random"

    def sample(self, examples, num_samples, generator, pair_perturbation="both", exclude=None):
        candidates = self._available(exclude).nonzero().flatten()
        order = torch.randperm(len(candidates), generator=generator)[: num_samples * len(examples)]
        return _in_turns([self.rows[int(candidates[i])] for i in order], len(examples))


# files one of which every saved tokenizer writes (fast, WordPiece, BPE, SentencePiece)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


def _folder_tokenizer(path: str, vocab_size: int) -> PreTrainedTokenizerBase:
    """The tokenizer saved beside an encoder. A folder without one is refused: transformers would build an empty
    tokenizer from the config alone, which maps every word to [UNK] and makes every text look alike."""
    folder = Path(path)
    found = folder.is_dir() and any((folder / name).is_file() for name in _TOKENIZER_FILES)
    tokenizer = None
    if found:
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError):
            tokenizer = None
    if tokenizer is None or len(tokenizer) < vocab_size // 2:
        raise ValueError(
            f"The pool sampler's encoder {path} has no usable tokenizer (none of {list(_TOKENIZER_FILES)}, or one of "
            f"far fewer tokens than its {vocab_size} embeddings): save the encoder's tokenizer there "
            "(tokenizer.save_pretrained), or pass encoder_tokenizer=."
        )
    return tokenizer


def _in_turns(rows: list[tuple[str, ...]], parts: int) -> list[list[tuple[str, ...]]]:
    """Rows dealt into `parts` lists so that taking the lists in turns gives them back in order."""
    return [rows[part::parts] for part in range(parts)]


def _has_faiss() -> bool:
    try:
        require("faiss")
    except ImportError:
        return False
    return True


SAMPLERS.update({"pool": PoolSampler, "pool_uncertainty": UncertaintyPoolSampler, "pool_random": RandomPoolSampler})

__all__ = [
    "FAISS_FROM_QUERIES",
    "PoolSampler",
    "RandomPoolSampler",
    "UncertaintyPoolSampler",
    "embed_rows",
    "load_pool",
    "nearest_rows",
]
