"""`AgoraTrainer`: fine-tuning that grows its training set where the model errs (Bort's Agora, de Wynter & Perry 2020).

A round trains one model per remaining hyperparameter setting of Θ on the current set (each one ordinary
`Trainer.train()` call, all starting from the same weights), ranks them on the Agora dev split by the task's
metric, samples new examples near the best model's dev errors, labels them with the teacher, appends them, and
keeps the best half of the settings. Growing the data between `Trainer.train()` calls (each builds its own
dataloader from `self.train_dataset`) needs no private internals.
"""

import dataclasses
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, set_seed
from transformers.trainer_utils import TrainOutput

from ..metrics import scores
from .agora_config import AgoraArguments
from .data import TEACHER_PROBS, AgoraDataCollator, model_input_names
from .history import AgoraRound, plot_agora_history
from .pool import PoolSampler
from .samplers import AgoraSampler, build_sampler, row_key
from .state import AgoraState
from .teacher import AgoraTeacher, check_is_classifier, check_label_behaviour, unwrap_classifier


logger = logging.getLogger(__name__)

AGORA_STATE_NAME = "agora_state.json"
AGORA_GENERATED_ROWS = "agora_generated.json"
# weights an Agora checkpoint may carry besides the Trainer's: the best model so far, the weights every setting of
# the current round starts from, and the best model of the current round so far
AGORA_WEIGHTS = {
    "best": "agora_best_weights.safetensors",
    "start": "agora_round_start.safetensors",
    "round_best": "agora_round_best.safetensors",
}
_MODEL_FILES = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")
_CHECKPOINT = re.compile(r"agora-round-(\d+)(?:/setting-(\d+))?/checkpoint-(\d+)$")
BINARY_TEACHER_BAR = 2 / 3  # the paper's "ok-ish labeller"; a binary bar is also the majority rate + the margin
REGRESSION_TEACHER_BAR = 0.5  # Pearson correlation on the Agora dev split


class _AgoraStateCallback(TrainerCallback):
    """Writes the Agora state (round, settings, generated rows, history, weights) into every checkpoint."""

    def __init__(self, trainer: "AgoraTrainer"):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            self.trainer._save_agora_state(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))


class AgoraTrainer(Trainer):
    """A `Trainer` that runs Agora's rounds of error-driven data expansion over a set Θ of hyperparameter settings.

    Args:
        model: any sequence-classification model (Bort or not, peft-wrapped or not); one output = regression.
        args: `AgoraArguments` (Θ is `args.agora_hyperparameter_space`).
        train_dataset: raw-text training rows (text columns + label); never modified.
        agora_dev_dataset: labelled raw-text rows whose errors drive the expansion and rank the settings. Carve
            it out of the training data (`carve_dev_split`), not from the set you report scores on.
        teacher: a classifier model, a `(model, tokenizer)` pair, a text-classification pipeline, or a callable
            `list[tuple[str, ...]] -> label ids | label names | probabilities` (scores for regression); same label
            set as the student. A model with another vocabulary than the student's must come with its tokenizer.
        agora_selection_dataset: optional second split, carved from train apart from `agora_dev_dataset`, that
            picks the best round and setting (the model the run ends on). Without it the Agora dev split picks,
            which is optimistic: Agora trains on near-copies of its rows. `agora_selected_by` says which did.
        sampler: overrides `args.agora_sampler`: an `AgoraSampler` or a callable `(text, n) -> list[str]`.
        processing_class: the student's tokenizer (required: rows are tokenised on the fly).
        agora_pool: unlabelled rows for the pool samplers (`pool`, `pool_uncertainty`, `pool_random`): a
            `datasets.Dataset` or a file (overrides `args.agora_pool`). Rows equal to train, dev or selection rows
            are left out of it.
        agora_held_out_dataset: the split(s) the final model is scored on (the official dev set). A pool holding
            any of their rows is refused: training on them would leak the test.
        Other arguments are those of `transformers.Trainer`.

    The algorithm, per round r: every remaining setting θ trains a model from the same start weights (round 1:
    the given model; later: the previous round's best model, or with replay the best model so far) on the
    current set; the settings are ranked by `agora_metric` on the Agora dev split; the best model's dev errors
    are expanded; Θ keeps its best ceil(|Θ|/2) settings (the paper's halving, behind its r <= 2(1 - 2^-|Θ|)
    bound). A single setting is kept for the remaining rounds. The run ends when the rounds are spent or
    `agora_patience` rounds in a row do not improve the best selection score, and always ends on the best
    weights seen (by the selection split when given). Settings run one after another; each is trained
    data-parallel over all Accelerate processes, so every process sees the same models and the same rows.

    After `train()`, `agora_history` holds one `AgoraRound` per round (with every setting's scores),
    `agora_generated` the added rows (with their round, source dev index and teacher confidence),
    `agora_train_dataset` the final training set and `agora_teacher_report` the teacher's dev score.
    """

    def __init__(
        self,
        model: nn.Module,
        args: AgoraArguments,
        train_dataset: datasets.Dataset,
        agora_dev_dataset: datasets.Dataset | None,
        teacher: Any,
        processing_class: PreTrainedTokenizerBase,
        sampler: AgoraSampler | Any | None = None,
        eval_dataset: datasets.Dataset | dict[str, datasets.Dataset] | None = None,
        data_collator: Any = None,
        agora_selection_dataset: datasets.Dataset | None = None,
        agora_pool: datasets.Dataset | str | None = None,
        agora_held_out_dataset: datasets.Dataset | list[datasets.Dataset] | None = None,
        **kwargs: Any,
    ):
        if not isinstance(args, AgoraArguments):
            raise TypeError(f"AgoraTrainer needs AgoraArguments, got {type(args).__name__}.")
        if not isinstance(processing_class, PreTrainedTokenizerBase):
            raise TypeError("AgoraTrainer needs the student's tokenizer as processing_class: it tokenises raw text.")
        check_is_classifier(model, "student")
        if train_dataset is None or len(train_dataset) == 0:
            raise ValueError("AgoraTrainer needs a non-empty train_dataset of raw-text rows.")
        if agora_dev_dataset is None or len(agora_dev_dataset) == 0:
            raise ValueError(
                "AgoraTrainer needs a non-empty agora_dev_dataset: its errors drive the data expansion. Carve one out "
                "of the training data with hf_bort.agora.carve_dev_split(train, fraction=0.1, seed=0)."
            )
        if agora_selection_dataset is not None and len(agora_selection_dataset) == 0:
            raise ValueError("agora_selection_dataset is empty; pass None to select on the Agora dev split.")
        config = unwrap_classifier(model).config
        self.agora_regression = config.num_labels == 1 or config.problem_type == "regression"
        self.agora_num_labels = config.num_labels
        self.agora_metric = args.agora_metric or ("pearson" if self.agora_regression else "accuracy")
        _check_metric(self.agora_metric, self.agora_regression, config.num_labels)
        self.agora_text_columns = _text_columns(train_dataset, args.agora_text_columns)
        named = {"train_dataset": train_dataset, "agora_dev_dataset": agora_dev_dataset}
        if agora_selection_dataset is not None:
            named["agora_selection_dataset"] = agora_selection_dataset
        for name, dataset in named.items():
            for column in (*self.agora_text_columns, args.agora_label_column):
                if column not in dataset.column_names:
                    raise ValueError(
                        f"Column {column!r} not found in {name} (columns: {dataset.column_names}). Set "
                        "agora_text_columns / agora_label_column in AgoraArguments."
                    )
            self._check_labels(dataset, name, args.agora_label_column)
        if isinstance(teacher, tuple):
            teacher, teacher_tokenizer = teacher
        else:
            teacher_tokenizer = processing_class
            teacher_config = getattr(unwrap_classifier(teacher), "config", None)
            if isinstance(teacher, nn.Module) and teacher_config is not None:
                if getattr(teacher_config, "vocab_size", None) != getattr(config, "vocab_size", None):
                    raise ValueError(
                        f"The teacher's vocabulary ({teacher_config.vocab_size} tokens) differs from the student's "
                        f"({config.vocab_size}): the student's tokenizer cannot feed it. Pass "
                        "teacher=(teacher_model, teacher_tokenizer)."
                    )
        if (args.min_teacher_confidence > 0 or args.soft_labels) and self.agora_regression:
            raise ValueError(
                "min_teacher_confidence and soft_labels need class probabilities; a regression teacher gives "
                "scores. Set min_teacher_confidence=0 and soft_labels=False."
            )
        self.agora_teacher = AgoraTeacher(
            teacher,
            config.label2id,
            teacher_tokenizer,
            args.agora_max_length,
            args.teacher_batch_size,
            regression=self.agora_regression,
        )
        self.agora_original_dataset = train_dataset
        self.agora_dev_dataset = agora_dev_dataset
        self.agora_selection_dataset = agora_selection_dataset
        self.agora_selected_by = "agora_selection" if agora_selection_dataset is not None else "agora_dev"
        self._agora_base = self._training_view(train_dataset, args)
        self.agora_generated = self._agora_base.select([])
        if data_collator is None:
            data_collator = AgoraDataCollator(
                processing_class,
                self.agora_text_columns,
                args.agora_label_column,
                args.agora_max_length,
                model_input_names(model),
                args.agora_row_weight,
            )
        super().__init__(
            model=model,
            args=args,
            train_dataset=self._agora_base,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            data_collator=data_collator,
            **kwargs,
        )
        self.agora_teacher.prepare(self.accelerator)
        pool = agora_pool if agora_pool is not None else args.agora_pool
        self.agora_sampler = build_sampler(
            sampler if sampler is not None else args.agora_sampler,
            student=self.model,
            student_tokenizer=processing_class,
            replace_fraction=args.replace_fraction,
            num_neighbours=args.num_neighbours,
            max_length=args.agora_max_length,
            **({"pool": pool} if pool is not None else {}),
            **self._pool_space(args, sampler, teacher_tokenizer),
            **args.agora_sampler_kwargs,
        )
        if args.agora_pool_balance and not (isinstance(self.agora_sampler, PoolSampler) and not self.agora_regression):
            raise ValueError(
                "agora_pool_balance draws the 'pool' sampler's rows in the pool's class proportions: it needs "
                f"agora_sampler='pool' (got {type(self.agora_sampler).__name__}) and a classification task."
            )
        held_out = agora_held_out_dataset
        held_out = [] if held_out is None else [held_out] if isinstance(held_out, datasets.Dataset) else held_out
        own = [train_dataset, agora_dev_dataset, *([agora_selection_dataset] if agora_selection_dataset else [])]
        self.agora_sampler.prepare(
            text_columns=self.agora_text_columns,
            known_rows={row_key(row) for dataset in own for row in self._rows(dataset)},
            held_out_rows={row_key(row) for dataset in held_out for row in self._rows(dataset, "agora_held_out")},
            min_rows=args.samples_per_error if args.agora_label_budget is None else args.agora_label_budget,
        )
        self._user_optimizer = self.optimizer is not None
        self.agora_state = AgoraState.fresh(len(args.agora_settings))
        self._weights: dict[str, dict[str, torch.Tensor] | None] = dict.fromkeys(AGORA_WEIGHTS)
        self.add_callback(_AgoraStateCallback(self))

    @property
    def agora_history(self) -> list[AgoraRound]:
        """One `AgoraRound` per finished round."""
        return self.agora_state.history

    @property
    def agora_teacher_report(self) -> dict[str, Any]:
        """The teacher gate's numbers: on the Agora dev split before round one, against the student after it."""
        return self.agora_state.teacher_report

    # ----- data -----

    def _rows(self, dataset: datasets.Dataset, name: str = "dataset") -> list[tuple[str, ...]]:
        """The text columns of a split as one tuple per row."""
        missing = [c for c in self.agora_text_columns if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"{name} lacks the text column(s) {missing} (columns: {dataset.column_names}); give it the "
                "training data's text columns."
            )
        return list(zip(*(list(dataset[c]) for c in self.agora_text_columns)))

    def _pool_space(self, args: AgoraArguments, sampler: Any, teacher_tokenizer) -> dict[str, Any]:
        """The 'pool' sampler's encoder for `agora_pool_space='teacher'`: the teacher model itself (its last hidden
        states, mean-pooled), fed by the teacher's tokenizer; nothing for the student's space."""
        if args.agora_pool_space == "student":
            return {}
        if sampler is not None or args.agora_sampler != "pool":
            raise ValueError(
                f"agora_pool_space={args.agora_pool_space!r} sets the 'pool' sampler's space, but the sampler is "
                f"{sampler if sampler is not None else args.agora_sampler!r}: set agora_sampler='pool', or leave "
                "agora_pool_space='student'."
            )
        if "encoder" in args.agora_sampler_kwargs:
            raise ValueError(
                "agora_sampler_kwargs names an encoder and agora_pool_space='teacher' names the teacher's: keep one."
            )
        if self.agora_teacher.kind != "model":
            raise ValueError(
                f"agora_pool_space='teacher' embeds the pool with the teacher model, but the teacher is a "
                f"{self.agora_teacher.kind}, which has no hidden states: pass teacher=(model, tokenizer), or leave "
                "agora_pool_space='student'."
            )
        return {"encoder": self.agora_teacher.teacher, "encoder_tokenizer": teacher_tokenizer}

    def _check_labels(self, dataset: datasets.Dataset, name: str, column: str) -> None:
        """Labels a classification run can use are integer ids of the student's labels; regression needs numbers."""
        values = np.asarray(list(dataset[column]))
        if self.agora_regression:
            if values.dtype.kind not in "biuf" or not np.isfinite(values.astype(np.float64)).all():
                raise ValueError(
                    f"{name} column {column!r} must hold finite numbers for a regression (one-output) student; "
                    f"found {values[:3].tolist()}..."
                )
            return
        if values.dtype.kind == "f":
            raise ValueError(
                f"{name} column {column!r} holds float labels ({values[:3].tolist()}...) but the student is a "
                f"{self.agora_num_labels}-class classifier: give integer label ids (dataset.cast_column), or a "
                "one-output student for a regression task."
            )
        if values.dtype.kind not in "biu":
            raise ValueError(
                f"{name} column {column!r} must hold integer label ids 0..{self.agora_num_labels - 1}, found "
                f"{values.dtype} values such as {values[:3].tolist()}; map names to ids first."
            )
        bad = sorted({int(v) for v in values if not 0 <= int(v) < self.agora_num_labels})
        if bad:
            raise ValueError(
                f"{name} column {column!r} has labels {bad[:10]} outside the student's label set "
                f"0..{self.agora_num_labels - 1}; drop unlabelled rows (-1) or fix num_labels/label2id."
            )

    def _training_view(
        self, dataset: datasets.Dataset, args: AgoraArguments, teacher_probs: list | None = None
    ) -> datasets.Dataset:
        """The original rows with only the columns training needs, plus empty provenance columns (and, with
        `distill_train_rows`, the teacher's probabilities)."""
        view = dataset.select_columns([*self.agora_text_columns, args.agora_label_column])
        label_type = "float32" if self.agora_regression else "int64"
        view = view.cast_column(args.agora_label_column, datasets.Value(label_type))
        n = len(view)
        features = datasets.Features(
            {
                **view.features,
                "agora_round": datasets.Value("int32"),
                "agora_source_index": datasets.Value("int64"),
                "agora_teacher_confidence": datasets.Value("float32"),
            }
        )
        columns = {"agora_round": [0] * n, "agora_source_index": [-1] * n, "agora_teacher_confidence": [1.0] * n}
        if args.soft_labels:
            features[TEACHER_PROBS] = datasets.List(datasets.Value("float32"))
            columns[TEACHER_PROBS] = [None] * n if teacher_probs is None else teacher_probs
        extra = datasets.Dataset.from_dict(columns, features=datasets.Features({k: features[k] for k in columns}))
        return datasets.concatenate_datasets([view, extra], axis=1).cast(features)

    @property
    def agora_train_dataset(self) -> datasets.Dataset:
        """The current training set: the original rows followed by every generated row."""
        if len(self.agora_generated) == 0:
            return self._agora_base
        return datasets.concatenate_datasets([self._agora_base, self.agora_generated])

    # ----- teacher gate -----

    def check_teacher(self) -> dict[str, Any]:
        """Score the teacher on the Agora dev split, chance-corrected; refuse a permuted, weak or (near-)constant one.

        Classification: accuracy must reach the majority-class rate + `agora_teacher_margin` (binary: and 2/3, the
        paper's bar), which no teacher predicting one class on more than 1 - margin of the rows can reach; and the
        task's metric (`agora_metric`: F1, Matthews) must beat the best constant predictor's by the margin.
        Regression: Pearson 0.5 (a constant scores 0).
        """
        dev = self.agora_dev_dataset
        labels = np.asarray(list(dev[self.args.agora_label_column]))
        predicted = self.agora_teacher(self._rows(dev)).labels.numpy()
        margin = self.args.agora_teacher_margin
        report: dict[str, Any] = {"split": "agora_dev", "rows": len(labels)}
        if self.agora_regression:
            score = scores.score("pearson", predicted, labels)
            report.update(metric="pearson", score=score, bar=REGRESSION_TEACHER_BAR, constant_score=0.0)
            failures = [] if score >= REGRESSION_TEACHER_BAR else [f"Pearson {score:.4f} against a bar of 0.5000"]
        else:
            counts = np.bincount(labels, minlength=self.agora_num_labels)
            majority = float(counts.max() / len(labels))
            bar = majority + margin
            rule = f"the majority-class rate {majority:.1%} + margin {margin:.0%}"
            if self.agora_num_labels == 2:
                bar, rule = max(bar, BINARY_TEACHER_BAR), rule + ", and at least 2/3 for a binary task"
            accuracy = scores.score("accuracy", predicted, labels)
            check_label_behaviour(predicted, labels, self.agora_num_labels, bar)
            shares = np.bincount(predicted.astype(np.int64), minlength=self.agora_num_labels) / len(labels)
            report.update(
                metric="accuracy",
                score=accuracy,
                bar=bar,
                majority_rate=majority,
                predicted_share=float(shares.max()),
            )
            failures = [] if accuracy >= bar else [f"accuracy {accuracy:.4f} against a bar of {bar:.4f} ({rule})"]
            if self.agora_metric != "accuracy":
                task_score = scores.score(self.agora_metric, predicted, labels)
                constant = max(
                    scores.score(self.agora_metric, np.full_like(labels, k), labels)
                    for k in range(self.agora_num_labels)
                )
                report.update(
                    task_metric=self.agora_metric,
                    task_score=task_score,
                    task_bar=constant + margin,
                    constant_score=constant,
                )
                if task_score < constant + margin:
                    failures.append(
                        f"{self.agora_metric} {task_score:.4f} against a bar of {constant + margin:.4f} (a constant "
                        f"predictor scores {constant:.4f}, + margin {margin:.0%})"
                    )
            if failures:
                failures.append(f"it predicts one class for {shares.max():.1%} of the rows")
        report["passed"] = not failures
        task = (
            f", {report['task_metric']} {report['task_score']:.4f} (bar {report['task_bar']:.4f})"
            if ("task_metric" in report)
            else ""
        )
        logger.warning(
            f"Agora teacher on the Agora dev split ({len(labels)} rows): {report['metric']} {report['score']:.4f} "
            f"(bar {report['bar']:.4f}){task}."
        )
        if failures and not self.args.agora_allow_weak_teacher:
            raise ValueError(
                f"The teacher is below the bar on the Agora dev split ({len(labels)} rows): {'; '.join(failures)}. "
                "Its labels would mislead the student (a teacher near a constant predictor teaches the class "
                "balance, not the task). Use a better teacher, or set agora_allow_weak_teacher=True "
                "(--agora_allow_weak_teacher) to run anyway."
            )
        self.agora_state.teacher_report.update(report)  # a resumed run keeps its comparison with the student
        return report

    def _compare_teacher_with_student(self, student_score: float) -> None:
        """After round one: the teacher against the student on rows neither trained on (the selection split, else
        the Agora dev split, which the student has not trained near yet). A teacher no better than the student would
        teach it its own errors: warn, and record it (the recipe puts it on the model card)."""
        split, name = self.agora_selection_dataset, "agora_selection"
        if split is None:
            split, name = self.agora_dev_dataset, "agora_dev"
        labels = np.asarray(list(split[self.args.agora_label_column]))
        teacher_score = scores.score(self.agora_metric, self.agora_teacher(self._rows(split)).labels.numpy(), labels)
        comparison = {
            "split": name,
            "rows": len(labels),
            "metric": self.agora_metric,
            "teacher": teacher_score,
            "student": student_score,
            "teacher_better": teacher_score > student_score,
        }
        self.agora_state.teacher_report["student_comparison"] = comparison
        if not comparison["teacher_better"]:
            warning = (
                f"The Agora teacher is not better than the student after round one on the {name} split "
                f"({len(labels)} rows, which neither trained on): {self.agora_metric} {teacher_score:.4f} against the "
                f"student's {student_score:.4f}. Its labels may teach the student its own errors; use a stronger "
                "teacher, or plain training."
            )
            self.agora_state.teacher_report["warning"] = warning
            logger.warning(warning)

    def _label_train_rows(self) -> None:
        """`distill_train_rows`: the teacher's probabilities on every original row, once (a resume relabels them:
        the teacher is deterministic, and checkpoints store only the generated rows)."""
        probs = self.agora_teacher(self._rows(self.agora_original_dataset)).probs
        if probs is None:
            raise ValueError("distill_train_rows needs the teacher's probabilities, but it returned labels only.")
        self._agora_base = self._training_view(self.agora_original_dataset, self.args, probs.tolist())

    # ----- rounds -----

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
        **kwargs: Any,
    ) -> TrainOutput:
        """Run Agora's rounds; each setting of a round is a full `Trainer.train()` with a fresh LR schedule."""
        args = self.args
        base_output_dir = args.output_dir
        resume_path = None
        if resume_from_checkpoint:
            resume_path = find_agora_checkpoint(resume_from_checkpoint, base_output_dir)
            self._load_agora_state(resume_path)
            logger.warning(f"Agora resumes from {resume_path} (round {self.agora_state.round}).")
        else:
            self.agora_generated = self._agora_base.select([])
            self.agora_state = AgoraState.fresh(len(args.agora_settings))
            self._weights = dict.fromkeys(AGORA_WEIGHTS)
            self._weights["start"] = _clone(self.model)
        self.check_teacher()
        if args.distill_train_rows and self._agora_base[0][TEACHER_PROBS] is None:
            self._label_train_rows()
        varied = sorted({key for setting in args.agora_settings for key in setting})
        saved = {name: getattr(args, name) for name in (*varied, "num_train_epochs", "output_dir")}
        args.num_train_epochs = args.epochs_per_round
        output = None
        rounds = tqdm(
            total=args.agora_rounds,
            initial=self.agora_state.round - 1,
            desc="Agora rounds",
            disable=args.disable_tqdm or not self.is_world_process_zero(),
        )
        try:
            while True:
                state = self.agora_state
                round_index = state.round
                self.train_dataset = self.agora_train_dataset
                while state.position < len(state.remaining):
                    setting_index = state.remaining[state.position]
                    for name in varied:
                        setattr(args, name, saved[name])
                    for name, value in args.agora_settings[setting_index].items():
                        setattr(args, name, value)
                    args.output_dir = self._setting_dir(base_output_dir, round_index, setting_index)
                    if resume_path is None:
                        self.model.load_state_dict(self._weights["start"])
                    # on a resume too: the shuffle order comes from this seed (accelerate's seedable sampler takes
                    # torch's initial seed), and Trainer restores the checkpoint's RNG state for the rest
                    set_seed(args.seed + round_index - 1)
                    if not self._user_optimizer:
                        self.optimizer = None  # fresh AdamW moments for the new data, like the fresh schedule
                    output = super().train(
                        resume_from_checkpoint=resume_path,
                        trial=trial,
                        ignore_keys_for_eval=ignore_keys_for_eval,
                        **kwargs,
                    )
                    resume_path = None
                    state.total_steps += output.global_step
                    state.loss_sum += output.training_loss * output.global_step
                    self._score_setting(setting_index)
                    state.position += 1
                for name in varied:
                    setattr(args, name, saved[name])
                record = self._end_round(round_index)
                rounds.update(1)
                rounds.set_postfix(dev_errors=record.dev_errors, train=record.train_size)
                if record.stopped:
                    break
        finally:
            for name, value in saved.items():
                setattr(args, name, value)
            rounds.close()
        self.model.load_state_dict(self._weights["best"])
        metrics = dict(output.metrics) if output is not None else {}
        metrics["agora_rounds"] = len(self.agora_history)
        metrics["agora_generated_rows"] = len(self.agora_generated)
        metrics["agora_labels_spent"] = self.agora_state.labels_spent
        metrics["agora_best_round"] = self.agora_state.best["round"]
        metrics["agora_best_setting"] = self.agora_state.best["setting"]
        metrics[f"agora_best_{self.agora_selected_by}_{self.agora_metric}"] = self.agora_state.best["metric"]
        metrics[f"agora_teacher_{self.agora_teacher_report['metric']}"] = self.agora_teacher_report["score"]
        total_steps = self.agora_state.total_steps
        return TrainOutput(total_steps, self.agora_state.loss_sum / max(total_steps, 1), metrics)

    def _setting_dir(self, base: str, round_index: int, setting_index: int) -> str:
        folder = os.path.join(base, f"agora-round-{round_index}")
        return folder if len(self.args.agora_settings) == 1 else os.path.join(folder, f"setting-{setting_index}")

    def _score_setting(self, setting_index: int) -> None:
        """Score the model just trained: on the Agora dev split (ranking) and the selection split (best model)."""
        state = self.agora_state
        dev_metric, dev_predicted, wrong = self._agora_score(self.agora_dev_dataset)
        if self.agora_selection_dataset is not None:
            selection_metric, selection_predicted, _ = self._agora_score(self.agora_selection_dataset)
        else:
            selection_metric, selection_predicted = dev_metric, dev_predicted
        result = {
            "setting": setting_index,
            "steps": self.state.global_step,
            "dev_metric": dev_metric,
            "dev_errors": len(wrong),
            "selection_metric": selection_metric,
        }
        state.results.append(result)
        if state.round_best is None or dev_metric > state.round_best["dev_metric"]:
            state.round_best = dict(result, wrong=wrong.tolist())
            self._weights["round_best"] = _clone(self.model)
        peak = state.best.get("peak_metric", state.best["metric"])
        if self._selects(selection_metric, selection_predicted, peak):
            state.best = {
                "metric": selection_metric,
                "round": state.round,
                "setting": setting_index,
                "wrong": wrong.tolist(),
                "peak_metric": state.best.get("peak_metric"),
                "peak_predictions": state.best.get("peak_predictions"),
            }
            self._weights["best"] = _clone(self.model)
        if peak is None or selection_metric > peak:
            state.best["peak_metric"] = selection_metric
            state.best["peak_predictions"] = selection_predicted.tolist()
            state.improved = True

    def _selects(self, metric: float, predicted: np.ndarray, peak: float | None) -> bool:
        """Whether the model just scored becomes the one the run ends on (`agora_selection_tolerance`).

        Within a round the highest selection score wins. A later round's model wins (always, at the default inf)
        unless the highest score so far (the peak) leads it by more than the tolerance in standard errors of the
        pair's difference: later rounds
        trained on more rows, and on a split of 50-80 rows one row is 1-2 points. Comparing with the peak, not the
        current choice, keeps a run of slightly worse rounds from drifting down.
        """
        best = self.agora_state.best
        if best["metric"] is None:
            return True
        if best["round"] == self.agora_state.round:
            return metric > best["metric"]
        tolerance = self.args.agora_selection_tolerance
        if math.isinf(tolerance):  # the last round's model, however its score compares
            return True
        if tolerance == 0 or best.get("peak_predictions") is None:  # a state saved before the tolerance existed
            return metric > peak
        split = self.agora_selection_dataset if self.agora_selection_dataset is not None else self.agora_dev_dataset
        error = scores.paired_standard_error(
            self.agora_metric,
            best["peak_predictions"],
            predicted,
            list(split[self.args.agora_label_column]),
            seed=self.args.seed,
        )
        return metric > peak - tolerance * error

    def _end_round(self, round_index: int) -> AgoraRound:
        """Rank the round's settings, keep the best half, decide whether to stop, and expand the data."""
        args, state = self.args, self.agora_state
        round_best = state.round_best
        ranked = sorted(state.results, key=lambda r: -r["dev_metric"])  # stable: ties keep Θ's order
        record = AgoraRound(
            round=round_index,
            train_size=len(self.train_dataset),
            dev_size=len(self.agora_dev_dataset),
            dev_errors=round_best["dev_errors"],
            dev_metric=round_best["dev_metric"],
            metric=self.agora_metric,
            setting=round_best["setting"],
            settings=[
                {k: r[k] for k in ("setting", "steps", "dev_metric", "dev_errors", "selection_metric")} for r in ranked
            ],
            selection_metric=max(r["selection_metric"] for r in state.results),
            selected_by=self.agora_selected_by,
            improved=state.improved,
        )
        if round_index == 1 and "student_comparison" not in state.teacher_report:
            self._compare_teacher_with_student(round_best["selection_metric"])
        state.stale = 0 if record.improved else state.stale + 1
        patience = args.agora_patience + (1 if args.agora_replay else 0)
        record.stopped = round_index >= args.agora_rounds or (args.agora_patience > 0 and state.stale >= patience)
        state.history.append(record)
        wrong = np.asarray(round_best["wrong"], dtype=np.int64)
        start = self._weights["round_best"]
        if not record.stopped:
            if args.agora_replay and not record.improved:
                record.replayed = True
                wrong = np.asarray(state.best["wrong"], dtype=np.int64)
                start = self._weights["best"]
            expansion = self._expand(round_index, wrong)
            record.generated, record.kept, record.teacher_agreement, record.low_confidence, record.labelled = expansion
            state.labels_spent += record.labelled
        self.log(record.log_dict())
        keep = [r["setting"] for r in ranked[: math.ceil(len(ranked) / 2)]]
        state.round, state.position, state.remaining = round_index + 1, 0, keep
        state.results, state.round_best, state.improved = [], None, False
        self._weights["start"], self._weights["round_best"] = start, None
        self.model.load_state_dict(start)
        return record

    def _predict(self, dataset: datasets.Dataset) -> np.ndarray:
        """Predicted label ids (scores for regression) of a raw-text split; the same on every process."""
        output = self.predict(dataset, metric_key_prefix="agora_dev")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        return logits[:, 0] if self.agora_regression else logits.argmax(-1)

    def _agora_score(self, dataset: datasets.Dataset) -> tuple[float, np.ndarray, np.ndarray]:
        """`agora_metric` on a split, the predictions, and the indices of the rows the model gets wrong."""
        predicted = self._predict(dataset)
        labels = np.asarray(list(dataset[self.args.agora_label_column]))
        if self.agora_regression:
            wrong = np.flatnonzero(np.abs(predicted - labels) > self.args.agora_regression_tolerance)
        else:
            wrong = np.flatnonzero(predicted != labels)
        return scores.score(self.agora_metric, predicted, labels), predicted, wrong

    def _expand(self, round_index: int, wrong: np.ndarray) -> tuple[int, int, float, int, int]:
        """Generate and label rows near the dev errors on the main process; every process gets the same rows."""
        payload = [None]
        if self.accelerator.is_main_process:
            payload = [self._generate(round_index, wrong)]
        if self.accelerator.num_processes > 1:
            payload = broadcast_object_list(payload)
        columns, generated, agreement, dropped, labelled = payload[0]
        new_rows = datasets.Dataset.from_dict(columns, features=self._agora_base.features)
        self.agora_generated = datasets.concatenate_datasets([self.agora_generated, new_rows])
        return generated, len(new_rows), agreement, dropped, labelled

    def _expansion_share(self, round_index: int) -> int | None:
        """Teacher labels this expansion may spend: the budget left, spread evenly over the expansions left (one
        after every round but the last). None without `agora_label_budget`."""
        budget = self.args.agora_label_budget
        if budget is None:
            return None
        expansions_left = max(1, self.args.agora_rounds - round_index)
        return (budget - self.agora_state.labels_spent) // expansions_left

    @torch.no_grad()
    def _generate(self, round_index: int, wrong: np.ndarray) -> tuple[dict[str, list], int, float, int, int]:
        """Rows near the dev errors, taken round-robin (every error's nearest first) up to this expansion's share of
        the label budget, labelled by the teacher."""
        args = self.args
        share = self._expansion_share(round_index)
        if len(wrong) == 0 or share == 0:
            return {name: [] for name in self._agora_base.column_names}, 0, float("nan"), 0, 0
        dev = self.agora_dev_dataset
        generator = torch.Generator().manual_seed(args.seed * 10_007 + round_index)
        existing = set(self._rows(self.train_dataset))
        per_error = args.samples_per_error if share is None else math.ceil(share / len(wrong))
        dev_rows = self._rows(dev)
        if args.agora_pool_balance and self.agora_sampler.row_classes is None:  # the teacher is fixed: once per run
            self.agora_sampler.balance_by(self.agora_teacher(self.agora_sampler.rows).labels)
        found = self.agora_sampler.sample(
            [dev_rows[i] for i in wrong.tolist()], per_error, generator, args.pair_perturbation, existing
        )
        proposed = sum(len(variants) for variants in found)
        if proposed == 0:
            raise RuntimeError(
                f"The Agora sampler {type(self.agora_sampler).__name__} produced no new example for any of the "
                f"{len(wrong)} dev errors of round {round_index}: it must return variants that differ from their "
                "source (check its replace_fraction / callable), or a pool with rows left."
            )
        rows, sources = [], []
        for rank in range(max(len(variants) for variants in found)):
            for i, variants in zip(wrong.tolist(), found):
                if rank < len(variants) and variants[rank] not in existing:
                    existing.add(variants[rank])
                    rows.append(variants[rank])
                    sources.append(i if self.agora_sampler.targeted else -1)
        rows, sources = rows[:share], sources[:share]
        labelled = len(rows)
        teacher_out = self.agora_teacher(rows)
        needs_probs = args.soft_labels or args.min_teacher_confidence > 0 or args.agora_row_weight == "confidence"
        if needs_probs and rows and teacher_out.probs is None:
            raise ValueError(
                "soft_labels / min_teacher_confidence / teacher_row_weight='confidence' need the teacher's "
                "probabilities, but it returned labels only."
            )
        labels = teacher_out.labels.tolist()
        confidence = teacher_out.confidence.tolist()
        keep = [k for k, c in enumerate(confidence) if not c < args.min_teacher_confidence]
        dropped = len(rows) - len(keep)
        rows, sources = [rows[k] for k in keep], [sources[k] for k in keep]
        labels, confidence = [labels[k] for k in keep], [confidence[k] for k in keep]
        if not rows or not self.agora_sampler.targeted:  # rows not drawn near an error have no source to agree with
            agreement = float("nan")
        elif self.agora_regression:  # share of new rows the teacher scores within the tolerance of their source
            source_labels = [dev[i][args.agora_label_column] for i in sources]
            agreement = float(np.mean(np.abs(np.subtract(labels, source_labels)) <= args.agora_regression_tolerance))
        else:
            agreement = float(np.mean(np.equal(labels, [dev[i][args.agora_label_column] for i in sources])))
        columns: dict[str, list] = {c: [row[k] for row in rows] for k, c in enumerate(self.agora_text_columns)}
        columns[args.agora_label_column] = labels
        columns["agora_round"] = [round_index] * len(rows)
        columns["agora_source_index"] = sources
        columns["agora_teacher_confidence"] = confidence
        if args.soft_labels:
            columns[TEACHER_PROBS] = [teacher_out.probs[k].tolist() for k in keep]
        return columns, proposed, agreement, dropped, labelled

    # ----- loss -----

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy on every row, plus `distill_alpha` x T^2 x KL(teacher || student) on the rows that carry the
        teacher's probabilities (generated rows; with `distill_train_rows` the original rows too). With
        `teacher_row_weight`, each generated row's terms are scaled by its weight (gold rows weigh 1)."""
        teacher_probs = inputs.pop("teacher_probs", None)
        teacher_mask = inputs.pop("teacher_mask", None)
        weight = inputs.pop("row_weight", None)
        if weight is None:
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
        else:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs["logits"].float()
            if self.agora_regression:
                per_row = (logits[:, 0] - labels.float()) ** 2
            else:
                per_row = nn.functional.cross_entropy(logits, labels, reduction="none")
            loss = (weight * per_row).sum() / weight.numel()
        if self.args.soft_labels and teacher_probs is not None and bool(teacher_mask.any()):
            temperature = self.args.distill_temperature
            logits = outputs["logits"][teacher_mask] / temperature
            target = (teacher_probs[teacher_mask].clamp_min(1e-12).log() / temperature).softmax(-1)
            kl = nn.functional.kl_div(logits.log_softmax(-1), target, reduction="none").sum(-1)
            if weight is not None:
                kl = kl * weight[teacher_mask]
            loss = loss + self.args.distill_alpha * temperature**2 * kl.sum() / teacher_mask.numel()
        return (loss, outputs) if return_outputs else loss

    # ----- checkpoints -----

    def _save_agora_state(self, folder: str) -> None:
        """Rows and weights first, the state file last (atomically): a checkpoint with a state file is complete."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        rows = self.agora_generated.to_dict()
        _atomic_write(path / AGORA_GENERATED_ROWS, json.dumps(rows))
        weights = []
        for key, name in AGORA_WEIGHTS.items():
            if self._weights[key] is not None:
                save_file({k: v.contiguous() for k, v in self._weights[key].items()}, str(path / name))
                weights.append(key)
        state = dataclasses.replace(
            self.agora_state,
            weights=weights,
            generated_rows=len(self.agora_generated),
            settings=self.args.agora_settings,
        )
        state.save_to_json(path / AGORA_STATE_NAME)

    def _load_agora_state(self, folder: str) -> None:
        path = Path(folder)
        state = AgoraState.load_from_json(path / AGORA_STATE_NAME)
        if state.settings != self.args.agora_settings:
            raise ValueError(
                f"{folder} was saved with another agora_hyperparameter_space; resume with the same settings or "
                "start a new run in another output_dir."
            )
        rows = json.loads((path / AGORA_GENERATED_ROWS).read_text())
        generated = datasets.Dataset.from_dict(rows, features=self._agora_base.features)
        if len(generated) != state.generated_rows:
            raise ValueError(
                f"{folder}: {AGORA_GENERATED_ROWS} has {len(generated)} rows, expected {state.generated_rows}."
            )
        self.agora_state = state
        self.agora_generated = generated
        self._weights = {
            key: load_file(str(path / name)) if key in state.weights else None for key, name in AGORA_WEIGHTS.items()
        }

    # ----- reporting -----

    def plot_agora_history(self, path: str | os.PathLike) -> None:
        """Write the per-round history as a PNG."""
        plot_agora_history(self.agora_history, path)


def incomplete_reason(folder: str | os.PathLike) -> str | None:
    """Why an Agora checkpoint folder cannot be resumed from (None when it is complete)."""
    path = Path(folder)
    if not (path / AGORA_STATE_NAME).is_file():
        return f"it has no {AGORA_STATE_NAME} (not saved by an AgoraTrainer run, or cut short while saving)"
    try:
        state = json.loads((path / AGORA_STATE_NAME).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"its {AGORA_STATE_NAME} is not valid JSON"
    missing = [name for name in (AGORA_GENERATED_ROWS, "trainer_state.json") if not (path / name).is_file()]
    missing += [AGORA_WEIGHTS[key] for key in state.get("weights", []) if not (path / AGORA_WEIGHTS[key]).is_file()]
    if not any((path / name).is_file() for name in _MODEL_FILES):
        missing.append("model.safetensors")
    return f"it lacks {', '.join(missing)}" if missing else None


def find_agora_checkpoint(resume_from_checkpoint: str | bool, base_output_dir: str) -> str:
    """The checkpoint to resume: the given folder, or with `True` the complete one furthest along in the run (by the
    round, setting and step it records) of any round and setting."""
    if not isinstance(resume_from_checkpoint, bool):
        reason = incomplete_reason(resume_from_checkpoint)
        if not os.path.isdir(resume_from_checkpoint):
            reason = "it does not exist"
        if reason:
            raise ValueError(
                f"Cannot resume Agora from {resume_from_checkpoint}: {reason}. Pass resume_from_checkpoint=True to "
                "pick the complete checkpoint furthest along in the run."
            )
        return str(resume_from_checkpoint)
    base = Path(base_output_dir)
    found = []
    if base.is_dir():
        for folder in base.glob("agora-round-*/**/checkpoint-*"):
            if folder.is_dir() and _CHECKPOINT.search(folder.relative_to(base).as_posix()):
                found.append(folder)
    if not found:
        raise ValueError(
            f"No Agora checkpoint (agora-round-*/checkpoint-*) found in {base_output_dir}; train without "
            "resume_from_checkpoint, with save_strategy set so that checkpoints are written."
        )
    complete = []
    for folder in sorted(found):
        reason = incomplete_reason(folder)
        order = _recorded_order(folder) if reason is None else None
        if order is None:
            reason = reason or f"its {AGORA_STATE_NAME} or trainer_state.json records no round, setting and step"
            logger.warning(f"Skipping Agora checkpoint {folder}: {reason}.")
        else:
            complete.append((order, folder))
    if not complete:
        raise ValueError(f"Every Agora checkpoint in {base_output_dir} is incomplete; start the run again.")
    return str(max(complete)[1])


def _recorded_order(folder: Path) -> tuple[int, int, int] | None:
    """Where a checkpoint stands in the run, as it records it: (round, rank of its setting in the round, step).

    The newest checkpoint is the one furthest along, whatever the folders' modification times say (a copy or a
    `touch` changes those); settings of a round train in rank order, which is not their index order after round 1.
    """
    try:
        state = json.loads((folder / AGORA_STATE_NAME).read_text())
        step = json.loads((folder / "trainer_state.json").read_text())["global_step"]
        return int(state["round"]), int(state["position"]), int(step)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _clone(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _check_metric(metric: str, regression: bool, num_labels: int) -> None:
    if regression and metric not in scores.REGRESSION_METRICS:
        raise ValueError(
            f"agora_metric={metric!r} needs classes; a regression student is ranked by pearson/spearmanr."
        )
    if not regression and metric in scores.REGRESSION_METRICS:
        raise ValueError(f"agora_metric={metric!r} is for regression; use accuracy, f1 or matthews_correlation.")
    if metric == "f1" and num_labels != 2:
        raise ValueError("agora_metric='f1' is the positive class's F1 of a binary task; use accuracy here.")


def _text_columns(dataset: datasets.Dataset, given: list[str] | None) -> tuple[str, ...]:
    if given:
        return tuple(given)
    strings = [
        name
        for name, feature in dataset.features.items()
        if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")
    ]
    if len(strings) not in (1, 2):
        raise ValueError(
            f"Cannot infer the text columns from {dataset.column_names}; set AgoraArguments.agora_text_columns."
        )
    return tuple(strings)


__all__ = ["AgoraTrainer", "find_agora_checkpoint", "incomplete_reason"]
