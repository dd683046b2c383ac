"""The teacher that labels Agora's generated examples: a classifier model, a `transformers` pipeline or a callable."""

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
    """Hard labels of a batch and, when the teacher gives them, its class probabilities."""

    labels: torch.Tensor
    probs: torch.Tensor | None = None

    @property
    def confidence(self) -> torch.Tensor:
        """Probability of the chosen label; NaN where the teacher only gives labels."""
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


def check_label_maps(teacher_label2id: dict[str, int], student_label2id: dict[str, int], source: str) -> None:
    """A teacher is only useful if its label ids mean what the student's do."""
    teacher_map = {str(k): int(v) for k, v in teacher_label2id.items()}
    student_map = {str(k): int(v) for k, v in student_label2id.items()}
    if teacher_map != student_map:
        raise ValueError(
            f"The teacher ({source}) has label2id {teacher_map} but the student has {student_map}. They must "
            "label the same classes with the same ids: set id2label/label2id on both configs to the task's labels."
        )


class AgoraTeacher:
    """Labels texts in eval mode and batches, whatever form the teacher came in.

    `teacher` is a `PreTrainedModel` for sequence classification (tokenised with `tokenizer`, by default the
    student's), a text-classification `Pipeline`, or a callable `list[tuple[str, ...]] -> labels` where labels are
    ids, label names, or a `[n, num_labels]` array of probabilities.
    """

    def __init__(
        self,
        teacher: nn.Module | Pipeline | Callable[[list[tuple[str, ...]]], Any],
        label2id: dict[str, int],
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_length: int = 128,
        batch_size: int = 64,
    ):
        self.teacher = teacher
        self.label2id = {str(k): int(v) for k, v in label2id.items()}
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        if isinstance(teacher, Pipeline):
            check_label_maps(teacher.model.config.label2id, self.label2id, "pipeline")
            self.kind = "pipeline"
        elif isinstance(teacher, nn.Module):
            check_is_classifier(teacher, "teacher")
            check_label_maps(unwrap_classifier(teacher).config.label2id, self.label2id, type(teacher).__name__)
            if tokenizer is None:
                raise ValueError("A teacher model needs a tokenizer: pass teacher=(model, tokenizer).")
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
        labels = torch.cat([o.labels for o in outputs]) if outputs else torch.empty(0, dtype=torch.long)
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
                probs[row, self.label2id[item["label"]]] = item["score"]
        return TeacherOutput(probs.argmax(-1), probs)

    def _from_callable(self, batch):
        result = self.teacher(list(batch))
        if isinstance(result, Sequence) and result and isinstance(result[0], str):
            unknown = sorted({r for r in result if r not in self.label2id})
            if unknown:
                raise ValueError(
                    f"The teacher callable returned labels {unknown} not in the student's {self.label2id}."
                )
            result = [self.label2id[r] for r in result]
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
