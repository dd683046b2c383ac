"""`AgoraTrainer`: fine-tuning that grows its training set where the model errs (Bort's Agora, de Wynter & Perry 2020).

A round trains on the current set (one ordinary `Trainer.train()` call), predicts the Agora dev set, samples
new examples near each dev error, labels them with the teacher and appends them. Growing the data between
`Trainer.train()` calls (each builds its own dataloader from `self.train_dataset`) needs no private internals.
"""

import json
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
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.trainer_utils import TrainOutput, get_last_checkpoint

from .agora_config import AgoraArguments
from .data import TEACHER_PROBS, AgoraDataCollator, model_input_names
from .history import AgoraRound, plot_agora_history
from .samplers import AgoraSampler, build_sampler, sample_near
from .teacher import AgoraTeacher, check_is_classifier, unwrap_classifier


AGORA_STATE_NAME = "agora_state.json"
AGORA_GENERATED_DIR = "agora_generated"
AGORA_BEST_WEIGHTS = "agora_best_weights.safetensors"
_ROUND_DIR = re.compile(r"^agora-round-(\d+)$")


class _AgoraStateCallback(TrainerCallback):
    """Writes the Agora state (round, generated rows, history) into every checkpoint the Trainer saves."""

    def __init__(self, trainer: "AgoraTrainer"):
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            self.trainer._save_agora_state(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))


class AgoraTrainer(Trainer):
    """A `Trainer` that runs Agora's rounds of error-driven data expansion.

    Args:
        model: any sequence-classification model (Bort or not, peft-wrapped or not).
        args: `AgoraArguments`.
        train_dataset: raw-text training rows (text columns + label); never modified.
        agora_dev_dataset: labelled raw-text rows whose errors drive the expansion. Carve it out of the training
            data (`carve_dev_split`), not from the set you report scores on.
        teacher: a classifier model, a `(model, tokenizer)` pair, a text-classification pipeline, or a callable
            `list[tuple[str, ...]] -> label ids | label names | probabilities`; same label set as the student.
        sampler: overrides `args.agora_sampler`: an `AgoraSampler` or a callable `(text, n) -> list[str]`.
        processing_class: the student's tokenizer (required: rows are tokenised on the fly).
        Other arguments are those of `transformers.Trainer`.

    After `train()`, `agora_history` holds one `AgoraRound` per round, `agora_generated` the added rows (with
    their round, source dev index and teacher confidence) and `agora_train_dataset` the final training set.
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
        self.agora_text_columns = _text_columns(train_dataset, args.agora_text_columns)
        for name, dataset in (("train_dataset", train_dataset), ("agora_dev_dataset", agora_dev_dataset)):
            for column in (*self.agora_text_columns, args.agora_label_column):
                if column not in dataset.column_names:
                    raise ValueError(
                        f"Column {column!r} not found in {name} (columns: {dataset.column_names}). Set "
                        "agora_text_columns / agora_label_column in AgoraArguments."
                    )
        teacher, teacher_tokenizer = teacher if isinstance(teacher, tuple) else (teacher, processing_class)
        self.agora_teacher = AgoraTeacher(
            teacher,
            unwrap_classifier(model).config.label2id,
            teacher_tokenizer,
            args.agora_max_length,
            args.teacher_batch_size,
        )
        self.agora_original_dataset = train_dataset
        self.agora_dev_dataset = agora_dev_dataset
        self._agora_base = self._training_view(train_dataset, args)
        self.agora_generated = self._agora_base.select([])
        if data_collator is None:
            data_collator = AgoraDataCollator(
                processing_class,
                self.agora_text_columns,
                args.agora_label_column,
                args.agora_max_length,
                model_input_names(model),
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
        self.agora_sampler = build_sampler(
            sampler if sampler is not None else args.agora_sampler,
            model=self.model,
            tokenizer=processing_class,
            replace_fraction=args.replace_fraction,
            num_neighbours=args.num_neighbours,
            max_length=args.agora_max_length,
            **args.agora_sampler_kwargs,
        )
        self._user_optimizer = self.optimizer is not None
        self.agora_history: list[AgoraRound] = []
        self._agora = _fresh_round_state()
        self._best_weights: dict[str, torch.Tensor] | None = None
        self.add_callback(_AgoraStateCallback(self))

    # ----- data -----

    def _training_view(self, dataset: datasets.Dataset, args: AgoraArguments) -> datasets.Dataset:
        """The original rows with only the columns training needs, plus empty provenance columns."""
        view = dataset.select_columns([*self.agora_text_columns, args.agora_label_column])
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
            columns[TEACHER_PROBS] = [None] * n
        extra = datasets.Dataset.from_dict(columns, features=datasets.Features({k: features[k] for k in columns}))
        return datasets.concatenate_datasets([view, extra], axis=1).cast(features)

    @property
    def agora_train_dataset(self) -> datasets.Dataset:
        """The current training set: the original rows followed by every generated row."""
        if len(self.agora_generated) == 0:
            return self._agora_base
        return datasets.concatenate_datasets([self._agora_base, self.agora_generated])

    # ----- rounds -----

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
        **kwargs: Any,
    ) -> TrainOutput:
        """Run Agora's rounds; each is a full `Trainer.train()` on the current set with a fresh LR schedule."""
        args = self.args
        base_output_dir = args.output_dir
        resume_path = None
        if resume_from_checkpoint:
            resume_path = self._find_agora_checkpoint(resume_from_checkpoint, base_output_dir)
            self._load_agora_state(resume_path)
        else:
            self.agora_history = []
            self.agora_generated = self._agora_base.select([])
            self._agora = _fresh_round_state()
            self._best_weights = None
        saved_epochs = args.num_train_epochs
        args.num_train_epochs = args.epochs_per_round
        total_steps, loss_sum, output = 0, 0.0, None
        rounds = tqdm(
            range(self._agora["round"], args.agora_rounds + 1),
            desc="Agora rounds",
            disable=args.disable_tqdm or not self.is_world_process_zero(),
        )
        try:
            for round_index in rounds:
                self._agora["round"] = round_index
                self.train_dataset = self.agora_train_dataset
                args.output_dir = os.path.join(base_output_dir, f"agora-round-{round_index}")
                if not self._user_optimizer:
                    self.optimizer = None  # fresh AdamW moments for the new data, like the fresh schedule
                output = super().train(
                    resume_from_checkpoint=resume_path,
                    trial=trial,
                    ignore_keys_for_eval=ignore_keys_for_eval,
                    **kwargs,
                )
                resume_path = None
                total_steps += output.global_step
                loss_sum += output.training_loss * output.global_step
                record = self._end_round(round_index)
                rounds.set_postfix(dev_errors=record.dev_errors, train=record.train_size)
                if self._should_stop(round_index):
                    break
        finally:
            args.output_dir = base_output_dir
            args.num_train_epochs = saved_epochs
            rounds.close()
        if args.agora_replay and self._best_weights is not None:
            self._restore_best()
        metrics = dict(output.metrics) if output is not None else {}
        metrics["agora_rounds"] = len(self.agora_history)
        metrics["agora_generated_rows"] = len(self.agora_generated)
        return TrainOutput(total_steps, loss_sum / max(total_steps, 1), metrics)

    def _should_stop(self, round_index: int) -> bool:
        patience = self.args.agora_patience
        return round_index >= self.args.agora_rounds or (patience > 0 and self._agora["stale"] >= patience)

    def _end_round(self, round_index: int) -> AgoraRound:
        """Score the Agora dev set, keep track of the best round, and expand the data for the next round."""
        wrong = self._dev_errors()
        state = self._agora
        record = AgoraRound(
            round=round_index,
            train_size=len(self.train_dataset),
            dev_size=len(self.agora_dev_dataset),
            dev_errors=len(wrong),
            dev_metric=1.0 - len(wrong) / len(self.agora_dev_dataset),
        )
        record.improved = state["best_errors"] is None or len(wrong) < state["best_errors"]
        if record.improved:
            state.update(best_errors=len(wrong), best_round=round_index, best_wrong=wrong.tolist(), stale=0)
            if self.args.agora_replay:
                self._best_weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        else:
            state["stale"] += 1
        self.agora_history.append(record)
        if not self._should_stop(round_index):
            if self.args.agora_replay and not record.improved:
                self._restore_best()
                record.replayed = True
                wrong = np.asarray(state["best_wrong"], dtype=np.int64)
            record.generated, record.kept, record.teacher_agreement = self._expand(round_index, wrong)
        self.log(record.log_dict())
        return record

    def _restore_best(self) -> None:
        self.model.load_state_dict(self._best_weights)

    def _dev_errors(self) -> np.ndarray:
        """Indices of the Agora dev rows the model gets wrong (same answer on every process)."""
        output = self.predict(self.agora_dev_dataset, metric_key_prefix="agora_dev")
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        labels = np.asarray(list(self.agora_dev_dataset[self.args.agora_label_column]))
        return np.flatnonzero(logits.argmax(-1) != labels)

    def _expand(self, round_index: int, wrong: np.ndarray) -> tuple[int, int, float]:
        """Generate and label rows near the dev errors on the main process; every process gets the same rows."""
        payload = [None]
        if self.accelerator.is_main_process:
            payload = [self._generate(round_index, wrong)]
        if self.accelerator.num_processes > 1:
            payload = broadcast_object_list(payload)
        columns, generated, agreement = payload[0]
        new_rows = datasets.Dataset.from_dict(columns, features=self._agora_base.features)
        self.agora_generated = datasets.concatenate_datasets([self.agora_generated, new_rows])
        return generated, len(new_rows), agreement

    @torch.no_grad()
    def _generate(self, round_index: int, wrong: np.ndarray) -> tuple[dict[str, list], int, float]:
        args = self.args
        if len(wrong) == 0:
            return {name: [] for name in self._agora_base.column_names}, 0, float("nan")
        dev = self.agora_dev_dataset
        generator = torch.Generator().manual_seed(args.seed * 10_007 + round_index)
        existing = set(zip(*(self.train_dataset[c] for c in self.agora_text_columns)))
        rows, sources, proposed = [], [], 0
        chunk = max(1, args.teacher_batch_size // args.samples_per_error)
        bar = tqdm(
            total=len(wrong), desc=f"Agora round {round_index}: sampling", leave=False, disable=args.disable_tqdm
        )
        for start in range(0, len(wrong), chunk):
            indices = wrong[start : start + chunk].tolist()
            examples = [tuple(dev[i][c] for c in self.agora_text_columns) for i in indices]
            variants = sample_near(
                self.agora_sampler, examples, args.samples_per_error, generator, args.pair_perturbation
            )
            for i, found in zip(indices, variants):
                proposed += len(found)
                for row in found:
                    if row not in existing:
                        existing.add(row)
                        rows.append(row)
                        sources.append(i)
            bar.update(len(indices))
        bar.close()
        if proposed == 0:
            raise RuntimeError(
                f"The Agora sampler {type(self.agora_sampler).__name__} produced no new example for any of the "
                f"{len(wrong)} dev errors of round {round_index}: it must return variants that differ from their "
                "source (check its replace_fraction / callable)."
            )
        teacher_out = self.agora_teacher(rows) if rows else None
        if args.soft_labels and teacher_out is not None and teacher_out.probs is None:
            raise ValueError("soft_labels=True, but the teacher returned labels without probabilities.")
        labels = teacher_out.labels.tolist() if rows else []
        source_labels = [dev[i][args.agora_label_column] for i in sources]
        agreement = float(np.mean(np.equal(labels, source_labels))) if rows else float("nan")
        columns: dict[str, list] = {c: [row[k] for row in rows] for k, c in enumerate(self.agora_text_columns)}
        columns[args.agora_label_column] = labels
        columns["agora_round"] = [round_index] * len(rows)
        columns["agora_source_index"] = sources
        columns["agora_teacher_confidence"] = teacher_out.confidence.tolist() if rows else []
        if args.soft_labels:
            columns[TEACHER_PROBS] = teacher_out.probs.tolist() if rows else []
        return columns, proposed, agreement

    # ----- loss -----

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy on every row, plus `distill_alpha` x T^2 x KL(teacher || student) on generated rows."""
        teacher_probs = inputs.pop("teacher_probs", None)
        teacher_mask = inputs.pop("teacher_mask", None)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.args.soft_labels and teacher_probs is not None and bool(teacher_mask.any()):
            temperature = self.args.distill_temperature
            logits = outputs["logits"][teacher_mask] / temperature
            target = (teacher_probs[teacher_mask].clamp_min(1e-12).log() / temperature).softmax(-1)
            kl = nn.functional.kl_div(logits.log_softmax(-1), target, reduction="sum") / teacher_mask.numel()
            loss = loss + self.args.distill_alpha * temperature**2 * kl
        return (loss, outputs) if return_outputs else loss

    # ----- checkpoints -----

    def _save_agora_state(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        state = dict(self._agora, history=[r.to_dict() for r in self.agora_history])
        state["has_best_weights"] = self._best_weights is not None
        (Path(folder) / AGORA_STATE_NAME).write_text(json.dumps(state, indent=1))
        self.agora_generated.save_to_disk(os.path.join(folder, AGORA_GENERATED_DIR))
        if self._best_weights is not None:
            save_file(
                {k: v.contiguous() for k, v in self._best_weights.items()}, os.path.join(folder, AGORA_BEST_WEIGHTS)
            )

    def _load_agora_state(self, folder: str) -> None:
        state = json.loads((Path(folder) / AGORA_STATE_NAME).read_text())
        self.agora_history = [AgoraRound(**r) for r in state.pop("history")]
        has_best = state.pop("has_best_weights")
        self._agora = state
        generated = datasets.load_from_disk(os.path.join(folder, AGORA_GENERATED_DIR))
        self.agora_generated = generated.cast(self._agora_base.features)
        self._best_weights = load_file(os.path.join(folder, AGORA_BEST_WEIGHTS)) if has_best else None

    @staticmethod
    def _find_agora_checkpoint(resume_from_checkpoint: str | bool, base_output_dir: str) -> str:
        """The checkpoint to resume: the given folder, or with `True` the last one of the latest round."""
        if isinstance(resume_from_checkpoint, bool):
            rounds = (
                sorted(
                    (int(m.group(1)), entry.path)
                    for entry in os.scandir(base_output_dir)
                    if entry.is_dir() and (m := _ROUND_DIR.match(entry.name))
                )
                if os.path.isdir(base_output_dir)
                else []
            )
            for _, path in reversed(rounds):
                last = get_last_checkpoint(path)
                if last is not None and os.path.isfile(os.path.join(last, AGORA_STATE_NAME)):
                    return last
            raise ValueError(f"No Agora checkpoint (agora-round-*/checkpoint-*) found in {base_output_dir}.")
        if not os.path.isfile(os.path.join(resume_from_checkpoint, AGORA_STATE_NAME)):
            raise ValueError(
                f"{resume_from_checkpoint} has no {AGORA_STATE_NAME}: it was not saved by an AgoraTrainer run."
            )
        return resume_from_checkpoint

    # ----- reporting -----

    def plot_agora_history(self, path: str | os.PathLike) -> None:
        """Write the per-round history as a PNG."""
        plot_agora_history(self.agora_history, path)


def _fresh_round_state() -> dict[str, Any]:
    """Where the rounds stand: next round, best dev error count so far (and its round and errors), stale rounds."""
    return {"round": 1, "best_errors": None, "best_round": 0, "best_wrong": [], "stale": 0}


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


__all__ = ["AgoraTrainer"]
