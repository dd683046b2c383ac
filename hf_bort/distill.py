# Copyright 2026 The hf_bort developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
"""Knowledge distillation for masked-LM pretraining, as Bort was pretrained from RoBERTa-large.

Bort's objective (de Wynter & Perry, 2020) on masked text is

    loss = 0.1 * CE(student, labels) + 0.5 * T^2 * KL(p_teacher^T || p_student^T),   T = 2,

over the masked positions, where `p^T = softmax(logits / T)`. The authors' code applied a second softmax to the
student's already-normalised distribution, which flattens it towards uniform; here the temperature softmax is applied
exactly once to each side, so the KL is the textbook one of Hinton et al. (2015).

When the teacher has no masked-LM head, or its vocabulary differs from the student's, logits cannot be matched; the
student then matches the teacher's hidden states (and optionally attention maps) through a learned projection, as in
TinyBERT (Jiao et al., 2020). `DistillationTrainer` picks the signals and keeps the teacher frozen.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint


SIGNALS = ("logits", "hidden", "attentions")
PROJECTOR_WEIGHTS_NAME = "distillation_projector.safetensors"


@dataclass
class DistillationArguments(TrainingArguments):
    r"""
    [`TrainingArguments`] plus the distillation objective. Defaults are Bort's: 0.1 x MLM + 0.5 x T^2 x KL, T = 2.

    Args:
        mlm_weight: weight of the student's own masked-LM cross-entropy.
        kd_weight: weight of the temperature-scaled KL between teacher and student MLM distributions (logit KD).
        temperature: softmax temperature T of logit KD; the KL is multiplied by T^2 so gradients keep their scale.
        hidden_weight: weight of the mean squared error between projected student and teacher hidden states.
        attention_weight: weight of the KL between teacher and student attention distributions.
        distill_signals: `"auto"`, or a comma-separated subset of `logits,hidden,attentions`. `"auto"` matches
            logits when both models have an MLM head over the same vocabulary, and hidden states otherwise.
    """

    mlm_weight: float = field(default=0.1, metadata={"help": "Weight of the student's masked-LM cross-entropy."})
    kd_weight: float = field(default=0.5, metadata={"help": "Weight of T^2 * KL(teacher || student) on MLM logits."})
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature T of logit distillation."})
    hidden_weight: float = field(
        default=1.0, metadata={"help": "Weight of the hidden-state MSE (through a projection)."}
    )
    attention_weight: float = field(default=1.0, metadata={"help": "Weight of the attention-map KL, when matched."})
    distill_signals: str = field(
        default="auto", metadata={"help": "'auto' or a comma-separated subset of: logits, hidden, attentions."}
    )
    # Evaluation only needs the loss; gathering (batch, sequence, vocab) logits would cost gigabytes.
    prediction_loss_only: bool = field(default=True, metadata={"help": "Keep only the loss when evaluating."})

    def __post_init__(self):
        super().__post_init__()
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}. Bort uses temperature=2.0.")
        for name in ("mlm_weight", "kd_weight", "hidden_weight", "attention_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.distill_signals != "auto":
            unknown = set(self.signals) - set(SIGNALS)
            if unknown or not self.signals:
                raise ValueError(
                    f"distill_signals={self.distill_signals!r} names unknown signals {sorted(unknown)}; use 'auto' or "
                    f"a comma-separated subset of {', '.join(SIGNALS)}."
                )

    @property
    def signals(self) -> list[str]:
        """The requested signals as a list (`["auto"]` when automatic)."""
        return [s.strip() for s in self.distill_signals.split(",") if s.strip()]


def distillation_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """`T^2 * KL(softmax(t/T) || softmax(s/T))`, averaged over the positions where `mask` is true.

    One softmax per side (the original Bort code normalised the student twice). Zero when nothing is masked, so a
    batch without masked tokens contributes no gradient instead of a NaN.
    """
    if mask is not None:
        student_logits, teacher_logits = student_logits[mask], teacher_logits[mask]
    student_logits = student_logits.reshape(-1, student_logits.shape[-1])
    teacher_logits = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    dtype = torch.promote_types(student_logits.dtype, torch.float32)  # half-precision logits: softmax in fp32
    log_p_student = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher hidden-state index matched by each student hidden-state index 0..student_layers (0 = embeddings).

    Uniform mapping: student layer i -> teacher layer floor(i * Lt / Ls + 1/2), so embeddings match embeddings and the
    last layers match; with a 4-layer student and a 6-layer teacher that is [0, 2, 3, 5, 6].
    """
    if student_layers <= 0 or teacher_layers <= 0:
        raise ValueError(f"Both models need at least one layer; got {student_layers} and {teacher_layers}.")
    return [math.floor(i * teacher_layers / student_layers + 0.5) for i in range(student_layers + 1)]


class HiddenStateProjector(nn.Module):
    """One linear map from the student's width to the teacher's, shared by all matched layers (TinyBERT's W_h).

    It only exists for the loss: the trainer optimises it with the student, saves it in checkpoints so a resumed run
    continues with it, and leaves it out of the final model.
    """

    def __init__(self, student_width: int, teacher_width: int):
        super().__init__()
        self.proj = nn.Linear(student_width, teacher_width)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden_states)


def hidden_state_mse(
    student_states: tuple[torch.Tensor, ...],
    teacher_states: tuple[torch.Tensor, ...],
    projector: nn.Module | None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over matched layers of the MSE between projected student and teacher states, on non-padding tokens."""
    mapping = layer_map(len(student_states) - 1, len(teacher_states) - 1)
    losses = []
    for student_index, teacher_index in enumerate(mapping):
        student = student_states[student_index]
        student = projector(student) if projector is not None else student
        teacher = teacher_states[teacher_index].to(student.dtype)
        if attention_mask is not None:
            keep = attention_mask.bool()
            student, teacher = student[keep], teacher[keep]
        losses.append(F.mse_loss(student, teacher))
    return torch.stack(losses).mean()


def attention_kl(
    student_attentions: tuple[torch.Tensor, ...],
    teacher_attentions: tuple[torch.Tensor, ...],
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over matched layers of KL(teacher || student) between attention distributions, per query token.

    Heads are compared one to one when both models have as many; otherwise each model's heads are averaged first.
    Padding queries are left out (their rows are meaningless); padding keys carry zero probability on both sides.
    """
    mapping = layer_map(len(student_attentions), len(teacher_attentions))[1:]
    losses = []
    for student_index, teacher_index in enumerate(mapping):
        student, teacher = student_attentions[student_index], teacher_attentions[teacher_index - 1]
        if student.shape[1] != teacher.shape[1]:
            student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
        student, teacher = student.float().clamp_min(1e-12), teacher.float()
        kl = (teacher * (teacher.clamp_min(1e-12).log() - student.log())).sum(-1)  # (batch, heads, queries)
        if attention_mask is not None:
            keep = attention_mask[:, None, :].to(kl.dtype).expand_as(kl)
            losses.append((kl * keep).sum() / keep.sum().clamp_min(1))
        else:
            losses.append(kl.mean())
    return torch.stack(losses).mean()


def _has_mlm_head(model: nn.Module) -> bool:
    return isinstance(model, PreTrainedModel) and model.get_output_embeddings() is not None


def resolve_signals(student: PreTrainedModel, teacher: PreTrainedModel, requested: list[str]) -> list[str]:
    """Turn `["auto"]` into concrete signals and check that the requested ones are possible for these two models."""
    shared_vocab = student.config.vocab_size == teacher.config.vocab_size
    logits_possible = _has_mlm_head(student) and _has_mlm_head(teacher) and shared_vocab
    if requested == ["auto"]:
        return ["logits"] if logits_possible else ["hidden"]
    if "logits" in requested and not logits_possible:
        if not _has_mlm_head(teacher):
            problem = f"the teacher ({type(teacher).__name__}) has no masked-LM head"
            fix = "load it with AutoModelForMaskedLM and train its head, or distil with distill_signals='hidden'"
        elif not _has_mlm_head(student):
            problem = f"the student ({type(student).__name__}) has no masked-LM head"
            fix = "use a *ForMaskedLM student"
        else:
            problem = (
                f"teacher vocab_size={teacher.config.vocab_size} differs from student vocab_size="
                f"{student.config.vocab_size}, so their token distributions are not comparable"
            )
            fix = "build the student with the teacher's tokenizer and vocab_size, or use distill_signals='hidden'"
        raise ValueError(f"Logit distillation is impossible: {problem}. Fix: {fix}.")
    return requested


def check_tokenizers_match(teacher_tokenizer, student_tokenizer) -> None:
    """Raise unless both tokenizers map every token to the same id.

    Teacher and student read the same `input_ids`, and logit KD compares their distributions id by id.
    """
    teacher_vocab, student_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if teacher_vocab != student_vocab:
        differing = sorted(set(teacher_vocab.items()) ^ set(student_vocab.items()))[:3]
        raise ValueError(
            f"The teacher's tokenizer ({len(teacher_vocab)} tokens) and the student's ({len(student_vocab)} tokens) "
            f"do not share a vocabulary (e.g. {differing}); both models read the same token ids, so distillation "
            "needs identical ones. Tokenize with the teacher's tokenizer and build the student with its vocab_size."
        )


class DistillationTrainer(Trainer):
    """A [`Trainer`] whose loss mixes the student's masked-LM loss with distillation from a frozen teacher.

    The teacher is prepared by the accelerator for evaluation only (no DDP wrapper, no gradients) and kept in eval
    mode. Batches must carry MLM `labels` (-100 on unmasked positions), e.g. from `DataCollatorForLanguageModeling`.
    Evaluation reports the total as `eval_loss` and each term as `eval_mlm_loss`, `eval_kd_loss`, ...
    """

    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean; let the Trainer divide by accumulation.

    def __init__(self, model: PreTrainedModel, teacher: PreTrainedModel, args: DistillationArguments, **kwargs):
        if not isinstance(args, DistillationArguments):
            raise TypeError(f"DistillationTrainer needs DistillationArguments, got {type(args).__name__}.")
        self.signals = resolve_signals(model, teacher, args.signals)
        if "attentions" in self.signals:
            # Fused attention kernels never materialise the probabilities the loss compares.
            model.set_attn_implementation("eager")
            teacher.set_attn_implementation("eager")
        projector = None
        if "hidden" in self.signals and model.config.hidden_size != teacher.config.hidden_size:
            projector = HiddenStateProjector(model.config.hidden_size, teacher.config.hidden_size)
        super().__init__(model=model, args=args, **kwargs)
        self.model_accepts_loss_kwargs = False
        teacher.eval().requires_grad_(False)
        self.teacher = self.accelerator.prepare_model(teacher, evaluation_mode=True)
        self.projector = projector
        self._projector = self.accelerator.prepare_model(projector) if projector is not None else None
        if projector is not None:
            self.add_callback(_ProjectorCheckpointCallback(projector))
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The default optimizer, plus a parameter group for the hidden-state projection, which must learn too."""
        optimizer = super().create_optimizer(model)
        if self.projector is not None and not any(
            p is self.projector.proj.weight for group in optimizer.param_groups for p in group["params"]
        ):
            optimizer.add_param_group({"params": list(self.projector.parameters()), "weight_decay": 0.0})
        return optimizer

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        args: DistillationArguments = self.args
        want_hidden, want_attentions = "hidden" in self.signals, "attentions" in self.signals
        teacher_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        # A bare encoder (no masked-LM head) can still learn from the teacher's hidden states, without an MLM term.
        has_head = _has_mlm_head(self.accelerator.unwrap_model(model))
        if has_head and "labels" not in inputs:
            raise ValueError("DistillationTrainer needs masked-LM `labels` in each batch; use an MLM data collator.")
        if not has_head and args.mlm_weight > 0:
            raise ValueError(
                f"mlm_weight={args.mlm_weight} needs a student with a masked-LM head (e.g. BortForMaskedLM); pass "
                "mlm_weight=0 to distil a bare encoder from hidden states."
            )
        outputs = model(
            **(inputs if has_head else teacher_inputs),
            output_hidden_states=want_hidden,
            output_attentions=want_attentions,
        )
        with torch.no_grad():
            teacher_outputs = self.teacher(
                **teacher_inputs, output_hidden_states=want_hidden, output_attentions=want_attentions
            )
        attention_mask = inputs.get("attention_mask")
        terms = {"mlm_loss": (args.mlm_weight, outputs.loss)} if has_head else {}
        if "logits" in self.signals:
            masked = inputs["labels"] != -100
            kd = distillation_kl(outputs.logits, teacher_outputs.logits, args.temperature, masked)
            terms["kd_loss"] = (args.kd_weight, kd)
        if want_hidden:
            hidden = hidden_state_mse(
                outputs.hidden_states, teacher_outputs.hidden_states, self._projector, attention_mask
            )
            terms["hidden_loss"] = (args.hidden_weight, hidden)
        if want_attentions:
            attention = attention_kl(outputs.attentions, teacher_outputs.attentions, attention_mask)
            terms["attention_loss"] = (args.attention_weight, attention)
        loss = sum(weight * value for weight, value in terms.values())
        mode = "train" if model.training else "eval"
        rows = inputs["input_ids"].new_tensor([inputs["input_ids"].shape[0]], dtype=torch.float32)
        for name, (_, value) in terms.items():
            # Weighted by sequences, as the Trainer weights `eval_loss`, so `eval_mlm_loss` of a distillation run and
            # `eval_loss` of a masked-LM-only run on the same held-out set are the same statistic.
            value_and_rows = self.accelerator.gather(torch.cat([value.detach().float()[None] * rows, rows]))
            self._metrics[mode][name].append(value_and_rows.view(-1, 2).sum(0).tolist())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each loss term since the last log (`mlm_loss`, `kd_loss`, ...; `eval_`-prefixed in eval)."""
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for name, values in self._metrics[mode].items():
            if values:
                logs[f"{prefix}{name}"] = sum(total for total, _ in values) / sum(rows for _, rows in values)
        self._metrics[mode].clear()
        super().log(logs, start_time)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """`Trainer.train`, restoring the hidden-state projection first when resuming (it is not part of the model,
        so the Trainer does not restore it; its optimizer state is restored with the optimizer's)."""
        if resume_from_checkpoint is True:
            # None leaves the True for the Trainer, which then says that output_dir holds no checkpoint
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir) or True
        if isinstance(resume_from_checkpoint, (str, os.PathLike)) and self.projector is not None:
            self._load_projector(resume_from_checkpoint)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _load_projector(self, checkpoint: str | os.PathLike) -> None:
        """Load the hidden-state projection saved in `checkpoint` (by `_ProjectorCheckpointCallback`)."""
        path = os.path.join(checkpoint, PROJECTOR_WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{checkpoint} has no {PROJECTOR_WEIGHTS_NAME}: it was not written by a hidden-state "
                "DistillationTrainer run. Resume from a checkpoint of the same run, or start without resuming."
            )
        self.projector.load_state_dict(load_file(path, device=str(self.projector.proj.weight.device)))


class _ProjectorCheckpointCallback(TrainerCallback):
    """Saves the hidden-state projection into every checkpoint, beside the optimizer state that refers to it."""

    def __init__(self, projector: HiddenStateProjector):
        self.projector = projector

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            save_file(self.projector.state_dict(), os.path.join(folder, PROJECTOR_WEIGHTS_NAME))


__all__ = [
    "DistillationArguments",
    "DistillationTrainer",
    "HiddenStateProjector",
    "attention_kl",
    "check_tokenizers_match",
    "distillation_kl",
    "hidden_state_mse",
    "layer_map",
    "resolve_signals",
]
