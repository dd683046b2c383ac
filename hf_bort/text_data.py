# Copyright 2026 The hf_bort developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
"""Plain text for masked-LM pretraining: load it, tokenize it, pack it into fixed-length blocks, mask it.

Packing (as in transformers' `run_mlm.py` with `--line_by_line` off) wastes no compute on padding: the corpus is one
token stream cut into blocks of `block_size` tokens, each wrapped in the tokenizer's [CLS] ... [SEP].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase


TEXT_SUFFIXES = (".txt", ".raw", ".text")


def load_text(source: str | Path, split: str = "train", config_name: str | None = None, text_column: str = "text"):
    """A `datasets.Dataset` with one `text` column of non-blank lines.

    `source` is a local text file, a folder of `*.txt`/`*.raw`/`*.text` files, or a `datasets` dataset name (e.g.
    `wikitext` with `config_name="wikitext-103-raw-v1"`), of which `split` is read.
    """
    path = Path(source)
    if not path.exists() and (path.suffix in TEXT_SUFFIXES or str(source).startswith((".", "/", "~"))):
        raise FileNotFoundError(f"Text file or folder {path} does not exist; check the path.")
    if path.is_file() or path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in TEXT_SUFFIXES) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"No text files ({', '.join(TEXT_SUFFIXES)}) in folder {path}.")
        lines = []
        for file in files:
            # `splitlines` also strips the CRLF endings of WikiText's raw files.
            lines.extend(line.strip() for line in file.read_text(encoding="utf-8").splitlines())
        dataset = datasets.Dataset.from_dict({"text": [line for line in lines if line]})
    else:
        dataset = datasets.load_dataset(str(source), config_name, split=split)
        if text_column not in dataset.column_names:
            raise ValueError(
                f"Dataset {source!r} has no column {text_column!r} (columns: {dataset.column_names}); pass "
                "the name of its text column."
            )
        dataset = dataset.select_columns([text_column]).rename_column(text_column, "text")
        dataset = dataset.filter(lambda batch: [bool(t and t.strip()) for t in batch["text"]], batched=True)
    if len(dataset) == 0:
        raise ValueError(f"The corpus {source} holds no text (every line is blank); point to a file with text in it.")
    return dataset


def pack_into_blocks(
    dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, block_size: int, max_blocks: int | None = None
) -> datasets.Dataset:
    """Tokenize `dataset["text"]` as one stream and cut it into blocks of exactly `block_size` tokens.

    Each block is `[CLS] + block_size - 2 tokens + [SEP]` (no wrapping when the tokenizer has no such tokens); the
    tail shorter than a block is dropped. Columns: `input_ids`, `attention_mask` (all ones), `special_tokens_mask`.
    """
    wrap = tokenizer.cls_token_id is not None and tokenizer.sep_token_id is not None
    body = block_size - 2 if wrap else block_size
    if body < 1:
        raise ValueError(f"block_size={block_size} leaves no room for text between [CLS] and [SEP]; use >= 8.")

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        return {"ids": tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]}

    def pack(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        stream = [token for ids in batch["ids"] for token in ids]
        blocks = [stream[i : i + body] for i in range(0, len(stream) - body + 1, body)]
        if wrap:
            blocks = [[tokenizer.cls_token_id, *block, tokenizer.sep_token_id] for block in blocks]
        special = [[int(wrap)] + [0] * body + [int(wrap)] if wrap else [0] * body for _ in blocks]
        return {
            "input_ids": blocks,
            "attention_mask": [[1] * block_size for _ in blocks],
            "special_tokens_mask": special,
        }

    tokenized = dataset.map(tokenize, batched=True, remove_columns=dataset.column_names, desc="Tokenizing")
    # Batches of 1,000 lines keep memory flat; each drops at most one partial block.
    packed = tokenized.map(
        pack, batched=True, batch_size=1000, remove_columns=["ids"], desc=f"Packing into {block_size}"
    )
    if len(packed) == 0:
        total = sum(len(ids) for ids in tokenized["ids"])
        raise ValueError(
            f"The corpus has {total} tokens, fewer than one block of {block_size}; add text or lower --block_size."
        )
    if max_blocks is not None:
        packed = packed.select(range(min(max_blocks, len(packed))))
    return packed


def check_block_size(block_size: int, *configs: Any) -> None:
    """Raise unless every model's position table holds `block_size` positions."""
    for config in configs:
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and block_size > limit:
            raise ValueError(
                f"block_size={block_size} exceeds max_position_embeddings={limit} of the {config.model_type} model; "
                f"pass --block_size {limit} or less."
            )


class MaskedLMCollator:
    """Dynamic masking for training blocks; blocks that already carry `labels` (a fixed held-out set) pass through.

    Re-masking held-out text at every evaluation would make losses of different runs incomparable; `mask_once` fixes
    one masking with a seed and this collator keeps it.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, seed: int | None = None):
        self.dynamic = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "labels" in features[0]:
            keys = ("input_ids", "attention_mask", "labels")
            return {key: torch.tensor([f[key] for f in features], dtype=torch.long) for key in keys}
        return self.dynamic(features)


def mask_once(blocks: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, mlm_probability: float, seed: int):
    """Mask `blocks` once, reproducibly: the same seed gives every run the same held-out positions and targets."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)

    def mask(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        masked = collator(rows)
        return {key: masked[key].tolist() for key in ("input_ids", "attention_mask", "labels")}

    return blocks.map(mask, batched=True, remove_columns=blocks.column_names, desc="Masking held-out text")


__all__ = ["MaskedLMCollator", "check_block_size", "load_text", "mask_once", "pack_into_blocks"]
