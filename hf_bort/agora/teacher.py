"""The teacher that labels Agora's generated examples: a classifier model, a `transformers` pipeline or a callable."""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Pipeline, PreTrainedTokenizerBase

from .data import model_input_names


@dataclass
class TeacherOutput:
    """Hard labels (float scores for regression) of a batch and, when the teacher gives them, class probabilities."""

    labels: torch.Tensor
    probs: torch.Tensor | None = None

    @property
    def confidence(self) -> torch.Tensor:
        """Probability of the chosen label; NaN where the teacher only gives labels (or scores)."""
        if self.probs is None:
            return torch.full(self.labels.shape, float("nan"))
        return self.probs.gather(1, self.labels[:, None]).squeeze(1)


def unwrap_classifier(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def check_is_classifier(model: nn.Module, role: str) -> None:
    """Agora needs a sequence classifier (any `*ForSequenceClassification`, Bort's included, peft-wrapped or not)."""
    base = unwrap_classifier(model)
    if "ForSequenceClassification" not in type(base).__name__ or not hasattr(base, "config"):
        raise TypeError(
            f"The Agora {role} must be a sequence-classification model (e.g. AutoModelForSequenceClassification), "
            f"got {type(base).__name__}."
        )


_GENERIC_LABEL = re.compile(r"^label_\d+$")


def check_label_maps(teacher_label2id: dict[str, int], student_label2id: dict[str, int], source: str) -> None:
    """A teacher is only useful if its label ids mean what the student's do.

    Names are compared case-insensitively (`NEGATIVE` is `negative`). Generic names (`LABEL_0`, ...) say nothing,
    so they are not compared: `AgoraTrainer` checks the correspondence by behaviour (`check_label_behaviour`).
    """
    teacher_map = {str(k).lower(): int(v) for k, v in teacher_label2id.items()}
    student_map = {str(k).lower(): int(v) for k, v in student_label2id.items()}
    if len(teacher_map) != len(student_map):
        raise ValueError(
            f"The teacher ({source}) has {len(teacher_map)} labels {sorted(teacher_map)} but the student has "
            f"{len(student_map)}; give a teacher fine-tuned on the same task."
        )
    generic = all(_GENERIC_LABEL.match(name) for name in teacher_map) or all(
        _GENERIC_LABEL.match(name) for name in student_map
    )
    if not generic and teacher_map != student_map:
        raise ValueError(
            f"The teacher ({source}) has label2id {teacher_map} but the student has {student_map}. They must "
            "label the same classes with the same ids: set id2label/label2id on both configs to the task's labels."
        )


class AgoraTeacher:
    """Labels texts in eval mode and batches, whatever form the teacher came in.

    `teacher` is a `PreTrainedModel` for sequence classification (tokenised with `tokenizer`, by default the
    student's), a text-classification `Pipeline`, or a callable `list[tuple[str, ...]] -> labels` where labels are
    ids, label names, or a `[n, num_labels]` array of probabilities. With `regression=True` (a one-output student,
    e.g. STS-B) the teacher must be a one-output model too (or a callable returning scores): its value labels a row.
    """

    def __init__(
        self,
        teacher: nn.Module | Pipeline | Callable[[list[tuple[str, ...]]], Any],
        label2id: dict[str, int],
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int = 128,
        batch_size: int = 64,
        regression: bool = False,
    ):
        self.teacher = teacher
        self.label2id = {str(k): int(v) for k, v in label2id.items()}
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.regression = regression
        if isinstance(teacher, Pipeline):
            if regression:
                raise ValueError(
                    "A regression student needs a teacher that outputs a score: give the model itself "
                    "(teacher=(model, tokenizer) with num_labels=1) or a callable, not a pipeline."
                )
            check_label_maps(teacher.model.config.label2id, self.label2id, "pipeline")
            # the pipeline names labels by the teacher's own map (e.g. NEGATIVE or LABEL_0): read ids from it
            self.pipeline_label2id = {str(k): int(v) for k, v in teacher.model.config.label2id.items()}
            self.kind = "pipeline"
        elif isinstance(teacher, nn.Module):
            check_is_classifier(teacher, "teacher")
            config = unwrap_classifier(teacher).config
            if regression != (config.num_labels == 1):
                raise ValueError(
                    f"The student is a {'regression' if regression else 'classification'} model but the teacher "
                    f"{type(teacher).__name__} has {config.num_labels} output(s): give a teacher fine-tuned on the "
                    "same task (one output for a regression task such as STS-B)."
                )
            if not regression:
                check_label_maps(config.label2id, self.label2id, type(teacher).__name__)
            if tokenizer is None:
                raise ValueError("A teacher model needs a tokenizer: pass teacher=(model, tokenizer).")
            if len(tokenizer) > config.vocab_size:
                raise ValueError(
                    f"The teacher {type(teacher).__name__} has a vocabulary of {config.vocab_size} tokens but its "
                    f"tokenizer {type(tokenizer).__name__} has {len(tokenizer)}: pass the teacher's own tokenizer, "
                    "teacher=(model, AutoTokenizer.from_pretrained(teacher_path))."
                )
            self.input_names = model_input_names(teacher)
            self.kind = "model"
        elif callable(teacher):
            self.kind = "callable"
        else:
            raise TypeError(
                f"Unsupported teacher {type(teacher).__name__}: give a sequence-classification model, "
                "a (model, tokenizer) pair, a text-classification pipeline or a callable."
            )

    def prepare(self, accelerator) -> None:
        """Place a teacher model with the Trainer's accelerator (device, mixed precision), in eval mode."""
        if self.kind == "model":
            self.teacher = accelerator.prepare_model(self.teacher, evaluation_mode=True).eval()

    @torch.no_grad()
    def __call__(self, examples: list[tuple[str, ...]]) -> TeacherOutput:
        outputs = [
            self._label_batch(examples[i : i + self.batch_size]) for i in range(0, len(examples), self.batch_size)
        ]
        empty = torch.empty(0, dtype=torch.float if self.regression else torch.long)
        labels = torch.cat([o.labels for o in outputs]) if outputs else empty
        with_probs = [o.probs for o in outputs if o.probs is not None]
        probs = torch.cat(with_probs) if outputs and len(with_probs) == len(outputs) else None
        return TeacherOutput(labels, probs)

    def _label_batch(self, batch: list[tuple[str, ...]]) -> TeacherOutput:
        if self.kind == "model":
            return self._from_model(batch)
        if self.kind == "pipeline":
            return self._from_pipeline(batch)
        return self._from_callable(batch)

    def _from_model(self, batch):
        self.teacher.eval()
        columns = list(zip(*batch))
        encoded = self.tokenizer(
            *columns, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        device = next(self.teacher.parameters()).device
        inputs = {name: encoded[name].to(device) for name in self.input_names if name in encoded}
        logits = self.teacher(**inputs).logits.float().cpu()
        if self.regression:
            return TeacherOutput(logits[:, 0])
        probs = logits.softmax(-1)
        return TeacherOutput(probs.argmax(-1), probs)

    def _from_pipeline(self, batch):
        inputs = [{"text": ex[0], "text_pair": ex[1]} if len(ex) == 2 else ex[0] for ex in batch]
        results = self.teacher(
            inputs, top_k=None, truncation=True, max_length=self.max_length, batch_size=self.batch_size
        )
        probs = torch.zeros(len(batch), len(self.label2id))
        for row, scores in enumerate(results):
            for item in scores:
                probs[row, self.pipeline_label2id[item["label"]]] = item["score"]
        return TeacherOutput(probs.argmax(-1), probs)

    def _from_callable(self, batch):
        result = self.teacher(list(batch))
        if self.regression:
            scores = torch.as_tensor(np.asarray(result, dtype=np.float32)).reshape(-1)
            if scores.shape[0] != len(batch):
                raise ValueError(f"The teacher callable returned {scores.shape[0]} scores for {len(batch)} examples.")
            return TeacherOutput(scores)
        if isinstance(result, Sequence) and result and isinstance(result[0], str):
            by_name = {name.lower(): i for name, i in self.label2id.items()}  # names differing in case match
            unknown = sorted({r for r in result if r.lower() not in by_name})
            if unknown:
                raise ValueError(
                    f"The teacher callable returned labels {unknown} not in the student's {self.label2id}."
                )
            result = [by_name[r.lower()] for r in result]
        array = torch.as_tensor(np.asarray(result))
        if array.shape[0] != len(batch):
            raise ValueError(f"The teacher callable returned {array.shape[0]} outputs for {len(batch)} examples.")
        if array.ndim == 2:
            if array.shape[1] != len(self.label2id):
                raise ValueError(
                    f"The teacher callable returned {array.shape[1]} probabilities per example; the student has "
                    f"{len(self.label2id)} labels."
                )
            probs = array.float()
            return TeacherOutput(probs.argmax(-1), probs)
        labels = array.long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.label2id)):
            raise ValueError(f"The teacher callable returned label ids outside 0..{len(self.label2id) - 1}.")
        return TeacherOutput(labels)


def check_label_behaviour(predicted: np.ndarray, labels: np.ndarray, num_labels: int, bar: float) -> None:
    """Catch a teacher whose label ids are permuted relative to the student's, from its confusion on dev rows.

    Read each true class as the teacher's most frequent prediction for it. If that reading is a permutation other
    than the identity, reaches `bar` (the quality bar) and beats the identity by 10 points, the ids almost surely
    mean other classes than the student's. A teacher that always predicts one class is weak, not permuted.
    """
    confusion = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(confusion, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    total = max(int(confusion.sum()), 1)
    seen = np.flatnonzero(confusion.sum(1) > 0)
    mapping = {int(true): int(confusion[true].argmax()) for true in seen}
    if len(set(mapping.values())) != len(mapping) or all(true == pred for true, pred in mapping.items()):
        return
    identity = np.trace(confusion) / total
    permuted = sum(confusion[true, pred] for true, pred in mapping.items()) / total
    if permuted >= bar and permuted >= identity + 0.1:
        pairs = ", ".join(f"{true}->{pred}" for true, pred in mapping.items() if true != pred)
        raise ValueError(
            f"The teacher's label ids look permuted relative to the student's: on the Agora dev split it is right "
            f"{identity:.1%} of the time as is, but {permuted:.1%} if its ids are read as ({pairs}) (confusion "
            f"rows=true, columns=teacher: {confusion.tolist()}). Fix the teacher's id2label/label2id to match the "
            "student's."
        )


__all__ = [
    "AgoraTeacher",
    "TeacherOutput",
    "check_is_classifier",
    "check_label_behaviour",
    "check_label_maps",
    "unwrap_classifier",
]
