"""Data helpers: an honest dev split carved from train, and the collator that tokenises raw text on the fly."""

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


TEACHER_PROBS = "agora_teacher_probs"
_TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_input_names(model) -> tuple[str, ...]:
    """The tokenizer outputs a classifier's forward accepts (Bort, for one, has no token types)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    accepted = inspect.signature(base.forward).parameters
    return tuple(name for name in _TOKENIZER_OUTPUTS if name in accepted)


def carve_dev_split(
    dataset: datasets.Dataset,
    fraction: float = 0.1,
    seed: int = 0,
    label_column: str | None = "label",
    text_columns: Sequence[str] | None = None,
) -> datasets.DatasetDict:
    """Split `dataset` into `train` and `dev` (stratified by label when there is one), reproducibly per seed.

    Agora learns from its dev set, so that set must come out of the training data, never from the dev/test set
    a model is finally scored on. GLUE train sets repeat some texts (SST-2 371 times, RTE twice): with
    `text_columns`, all copies of a text land on the same side, so no dev text is ever trained on.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}.")
    keys = zip(*(list(dataset[column]) for column in text_columns)) if text_columns else range(len(dataset))
    group_of: dict = {}
    members: list[list[int]] = []
    for row, key in enumerate(keys):
        group = group_of.setdefault(key, len(group_of))
        if group == len(members):
            members.append([])
        members[group].append(row)
    rng = np.random.default_rng(seed)
    if label_column is not None and label_column in dataset.column_names and _is_categorical(dataset, label_column):
        labels = np.asarray(list(dataset[label_column]))[[rows[0] for rows in members]]
        strata = [np.flatnonzero(labels == value) for value in np.unique(labels)]
    else:
        strata = [np.arange(len(members))]
    dev_groups = []
    for stratum in strata:
        take = int(round(fraction * len(stratum)))
        take = min(max(take, 1), len(stratum) - 1) if len(stratum) > 1 else 0
        dev_groups.extend(rng.permutation(stratum)[:take].tolist())
    dev = sorted(row for group in dev_groups for row in members[group])
    dev_set = set(dev)
    train = [i for i in range(len(dataset)) if i not in dev_set]
    if not dev or not train:
        raise ValueError(f"Cannot carve a {fraction:.0%} dev split out of {len(dataset)} rows.")
    share = len(dev) / len(dataset)
    if share > max(2 * fraction, fraction + 0.05):
        raise ValueError(
            f"carve_dev_split(fraction={fraction}) would put {len(dev)} of {len(dataset)} rows ({share:.0%}) in dev: "
            f"the {len(members)} distinct texts in {len(strata)} label group(s) each need at least one dev text, "
            "and copies of a text stay together. Use a larger fraction or more rows."
        )
    return datasets.DatasetDict({"train": dataset.select(train), "dev": dataset.select(dev)})


def _is_categorical(dataset: datasets.Dataset, column: str) -> bool:
    feature = dataset.features[column]
    return isinstance(feature, datasets.ClassLabel) or (
        isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint", "bool", "string"))
    )


@dataclass
class AgoraDataCollator:
    """Tokenises the text columns of raw rows, pads, and passes labels (and teacher probabilities) along."""

    tokenizer: PreTrainedTokenizerBase
    text_columns: tuple[str, ...]
    label_column: str = "label"
    max_length: int = 128
    input_names: tuple[str, ...] = _TOKENIZER_OUTPUTS  # tokenizer outputs to pass on; see `model_input_names`
    # teacher-labelled (agora_round > 0) rows' weight in the loss: a factor, or "confidence" (the teacher's probability)
    row_weight: float | str = 1.0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        columns = [[f[c] for f in features] for c in self.text_columns]
        encoded = self.tokenizer(
            *columns, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        batch = {name: value for name, value in encoded.items() if name in self.input_names}
        if self.label_column in features[0]:
            batch["labels"] = torch.tensor([f[self.label_column] for f in features])
        if TEACHER_PROBS in features[0]:
            probs = [f[TEACHER_PROBS] for f in features]
            batch["teacher_mask"] = torch.tensor([p is not None and len(p) > 0 for p in probs])
            width = max((len(p) for p in probs if p), default=0)
            batch["teacher_probs"] = torch.tensor([p if p else [0.0] * width for p in probs], dtype=torch.float)
        if self.row_weight != 1.0 and "agora_round" in features[0]:
            generated = torch.tensor([f["agora_round"] > 0 for f in features])
            if self.row_weight == "confidence":
                weight = torch.tensor([f["agora_teacher_confidence"] for f in features], dtype=torch.float)
            else:
                weight = torch.full((len(features),), float(self.row_weight))
            batch["row_weight"] = torch.where(generated, weight, torch.ones(len(features)))
        return batch
