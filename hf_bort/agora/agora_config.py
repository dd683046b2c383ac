"""`AgoraArguments`: the `TrainingArguments` of an Agora run."""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..hyperparameter_space import parse_hyperparameter_space
from ..metrics.scores import METRICS


# The spaces `agora_pool_space` names: the student's own (re-embedded at each expansion) or the teacher model's.
POOL_SPACES = ("student", "teacher")


@dataclass
class AgoraArguments(TrainingArguments):
    """Training arguments plus the knobs of Agora's rounds, sampler and teacher.

    Each round trains `epochs_per_round` epochs (`num_train_epochs` is not used; `max_steps`, when set, is the
    budget of one round) with a fresh optimizer and learning-rate schedule, starting from the current weights.
    A warm restart per round is deliberate: the data changes between rounds, and a schedule that decayed to zero
    in round one would leave nothing to learn the new examples with.

    `agora_hyperparameter_space` is the paper's Θ: a JSON list of settings (`[{"learning_rate": 5e-5}, ...]`) or a
    grid (`{"learning_rate": [2e-5, 5e-5], "seed": [0, 1]}`, every combination), over `TrainingArguments` fields;
    a JSON string or the path of a JSON file, so that it is one command-line flag. Parsed into `agora_settings`
    (a list of dicts; `[{}]`, today's single setting, when not given).
    """

    agora_rounds: int = field(
        default=3, metadata={"help": "Maximum number of Agora rounds (train, find errors, expand)."}
    )
    epochs_per_round: float = field(
        default=1.0, metadata={"help": "Training epochs over the current set in each round."}
    )
    samples_per_error: int = field(
        default=4, metadata={"help": "New examples generated near each misclassified dev example."}
    )
    agora_sampler: str = field(
        default="embedding_neighbours",
        metadata={
            "help": "Sampler name in hf_bort.agora.SAMPLERS: token edits ('embedding_neighbours', 'masked_lm', "
            "'contextual') or rows of an unlabelled pool ('pool': nearest to each dev error; 'pool_uncertainty' and "
            "'pool_random': the active-learning baselines). Or pass `sampler=` to the trainer."
        },
    )
    agora_pool: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled rows for the pool samplers: a text file (one text per line; a pair's two texts "
            "separated by a tab) or a .csv/.tsv/.json(l) file with the task's text columns. Never modified."
        },
    )
    agora_pool_space: str = field(
        default="student",
        metadata={
            "help": "Where the 'pool' sampler finds the rows nearest each dev error: 'student' (its mean-pooled "
            "states as they are at each expansion; the pool is embedded again every time) or 'teacher' (the teacher "
            "model's states, fixed: the pool is embedded once). In the teacher's fine-tuned space an error's "
            "neighbours are rows the teacher labels like the error more often. Your own encoder: "
            "agora_sampler_kwargs={'encoder': path}."
        },
    )
    agora_pool_balance: bool = field(
        default=False,
        metadata={
            "help": "The 'pool' sampler draws the rows near the errors in the pool's class proportions, by the "
            "teacher's labels of the whole pool (computed once, on the first expansion; only the rows added count "
            "against agora_label_budget). Without it a weak student's errors, mostly of one class, pull in rows of "
            "that class and tilt the training set. Classification only."
        },
    )
    agora_label_budget: int | None = field(
        default=None,
        metadata={
            "help": "Teacher labels Agora may spend on new rows over the whole run, spread evenly over the "
            "expansions (one after every round but the last); each error then gets ceil(share / errors) "
            "candidates, taken nearest first across errors. 0: no new rows. Default: no budget, "
            "samples_per_error per error."
        },
    )
    teacher_row_weight: str = field(
        default="1",
        metadata={
            "help": "Weight of each teacher-labelled row in the loss, gold rows weighing 1: a number, or "
            "'confidence' (the teacher's probability for its label)."
        },
    )
    agora_sampler_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": 'Extra keyword arguments for the sampler (dict or JSON string), e.g. {"model": "path"}.'},
    )
    replace_fraction: float = field(
        default=0.15, metadata={"help": "Fraction of the (non-special) tokens of a text that a sampler changes."}
    )
    num_neighbours: int = field(
        default=10, metadata={"help": "Candidates per replaced token (nearest embeddings or top-k MLM fills)."}
    )
    pair_perturbation: str = field(
        default="both",
        metadata={"help": "For sentence-pair tasks: perturb the 'first', the 'second', 'both' or 'either' (random)."},
    )
    agora_text_columns: list[str] | None = field(
        default=None, metadata={"help": "Text columns of the datasets; inferred when there are one or two."}
    )
    agora_label_column: str = field(default="label", metadata={"help": "Label column of the datasets."})
    agora_max_length: int = field(
        default=128, metadata={"help": "Tokenizer truncation length for student and teacher."}
    )
    agora_patience: int = field(
        default=1,
        metadata={
            "help": "Stop after this many consecutive rounds that do not improve the best selection score (0 "
            "disables). With agora_replay, the first such round triggers a replay and does not count."
        },
    )
    agora_replay: bool = field(
        default=False,
        metadata={
            "help": "Replay: after a round that does not improve the best selection score, go back to the best "
            "weights (and their dev errors) before the next round. Every run ends on the best weights either way."
        },
    )
    # At 1,000 teacher labels (benchmarks/results/agora_glue/ACTIVE.md, SST-2 and MRPC, 9 arm-task pairs, 3-5
    # seeds): the last round's model scored on the official dev set at least as high as tolerance 1's choice in all
    # 9, and tolerance 1 above the strict maximum (0) in 4 of 5. A 50-80-row selection split does not tell rounds
    # apart; the rows later rounds add do.
    agora_selection_tolerance: float = field(
        default=math.inf,
        metadata={
            "help": "A later round's model replaces the chosen one unless the best selection score so far leads it by "
            "more than this many standard errors of their difference (a paired bootstrap on the selection split). "
            "Within a round the highest score wins. inf (default): the last round's model, trained on the most rows; "
            "0: the highest score of any round."
        },
    )
    agora_hyperparameter_space: str | None = field(
        default=None,
        metadata={
            "help": "Θ, the settings each round trains one model with: a JSON list of TrainingArguments overrides "
            '(\'[{"learning_rate": 5e-5}, {"learning_rate": 1e-4, "seed": 1}]\'), a JSON grid '
            '(\'{"learning_rate": [2e-5, 5e-5], "weight_decay": [0, 0.01]}\') or the path of a JSON file holding '
            "either. After each round the best ceil(|Θ|/2) settings (by the Agora dev metric) are kept. Default: "
            "one setting, the arguments as given."
        },
    )
    agora_metric: str | None = field(
        default=None,
        metadata={
            "help": "Metric that ranks settings and rounds: 'accuracy', 'f1' (positive class, binary), "
            "'matthews_correlation', 'pearson' or 'spearmanr'. Default: accuracy (classification), pearson "
            "(regression). Use the task's own GLUE metric (matthews_correlation for CoLA, f1 for MRPC/QQP)."
        },
    )
    agora_regression_tolerance: float = field(
        default=0.5,
        metadata={
            "help": "Regression only: a dev prediction off by more than this is an error that Agora expands "
            "around (0.5 on STS-B's 0-5 scale)."
        },
    )
    min_teacher_confidence: float = field(
        default=0.0,
        metadata={
            "help": "Generated rows whose teacher probability for its label is below this are dropped (and "
            "counted in the history). Classification teachers with probabilities only."
        },
    )
    agora_allow_weak_teacher: bool = field(
        default=False,
        metadata={
            "help": "Run even if the teacher is below the bar on the Agora dev split (binary: accuracy 2/3; "
            "multi-class: majority-class rate + agora_teacher_margin; regression: Pearson 0.5)."
        },
    )
    agora_teacher_margin: float = field(
        default=0.05,
        metadata={"help": "Multi-class teacher bar: the accuracy must beat the majority-class rate by this much."},
    )
    soft_labels: bool = field(
        default=False, metadata={"help": "Keep the teacher's probabilities and add a distillation loss on them."}
    )
    distill_alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the distillation term (on generated rows, and on the original rows with "
            "distill_train_rows) added to the cross-entropy (soft_labels only)."
        },
    )
    distill_train_rows: bool = field(
        default=False,
        metadata={
            "help": "With soft_labels, the teacher also labels the original training rows once, so the "
            "distillation term covers every row (KD on the train set plus Agora's targeted rows)."
        },
    )
    distill_temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the distillation term."})
    teacher_batch_size: int = field(default=64, metadata={"help": "Batch size for teacher labelling and sampling."})
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Must stay False: Agora tokenises raw text columns on the fly."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.agora_sampler_kwargs = _json_object(self.agora_sampler_kwargs, "agora_sampler_kwargs")
        self.agora_settings = parse_hyperparameter_space(
            self.agora_hyperparameter_space, TrainingArguments, source="agora_hyperparameter_space", fixed=_RUN_FIELDS
        )
        self.agora_row_weight = _row_weight(self.teacher_row_weight)
        self._check_settings_apply()
        if self.agora_metric is not None and self.agora_metric not in METRICS:
            raise ValueError(f"agora_metric={self.agora_metric!r} is not known; choose one of {list(METRICS)}.")
        if self.remove_unused_columns:
            raise ValueError(
                "AgoraArguments.remove_unused_columns must be False: Agora keeps the raw text columns and tokenises "
                "them itself."
            )
        if self.agora_pool_space not in POOL_SPACES:
            raise ValueError(f"agora_pool_space={self.agora_pool_space!r}; choose one of {list(POOL_SPACES)}.")
        checks = {
            "agora_rounds": self.agora_rounds >= 1,
            "epochs_per_round": self.epochs_per_round > 0,
            "samples_per_error": self.samples_per_error >= 1,
            "replace_fraction": 0 < self.replace_fraction <= 1,
            "num_neighbours": self.num_neighbours >= 1,
            "agora_patience": self.agora_patience >= 0,
            "agora_selection_tolerance": self.agora_selection_tolerance >= 0,
            "distill_alpha": 0 <= self.distill_alpha <= 1,
            "distill_temperature": self.distill_temperature > 0,
            "agora_regression_tolerance": self.agora_regression_tolerance >= 0,
            "min_teacher_confidence": 0 <= self.min_teacher_confidence <= 1,
            "agora_teacher_margin": 0 <= self.agora_teacher_margin < 1,
            "agora_label_budget": self.agora_label_budget is None or self.agora_label_budget >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"AgoraArguments.{name}={getattr(self, name)!r} is out of range.")
        if self.distill_train_rows and not self.soft_labels:
            raise ValueError("distill_train_rows distils on the teacher's probabilities: set soft_labels=True too.")
        if self.pair_perturbation not in ("first", "second", "both", "either"):
            raise ValueError(
                f"pair_perturbation={self.pair_perturbation!r}; choose 'first', 'second', 'both' or 'either'."
            )

    def _check_settings_apply(self) -> None:
        """Each setting of Θ as the `TrainingArguments` it makes, before anything runs: an unknown scheduler or
        optimizer name, a negative warm-up... fails now, not after the teacher check and the first settings."""
        run = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainingArguments) if f.init}
        for index, setting in enumerate(self.agora_settings):
            if not setting:
                continue
            try:
                TrainingArguments(**{**run, **setting})
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"agora_hyperparameter_space setting {index} {setting} is not valid TrainingArguments: {error}"
                ) from None


# TrainingArguments fields a setting may not override: they belong to the run, not to one model of a round.
_RUN_FIELDS = ("output_dir", "num_train_epochs", "remove_unused_columns", "save_strategy", "report_to")


def _row_weight(value: Any) -> float | str:
    """`teacher_row_weight` as a positive factor or "confidence"."""
    if str(value).strip().lower() == "confidence":
        return "confidence"
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = float("nan")
    if not math.isfinite(weight) or weight <= 0:
        raise ValueError(
            f"AgoraArguments.teacher_row_weight={value!r}: give a positive number (1 weighs a teacher row like a gold "
            "row) or 'confidence'."
        )
    return weight


def _json_object(value: Any, name: str) -> dict[str, Any]:
    """A dict from a dict, a JSON object string or None; a clear error otherwise."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"AgoraArguments.{name} is not valid JSON ({error.msg} at character {error.pos}): {value!r}. "
                'Give a JSON object, e.g. \'{"model": "path/to/mlm"}\'.'
            ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"AgoraArguments.{name} must be a JSON object (keyword arguments), got {type(value).__name__}: {value!r}."
        )
    return dict(value)


__all__ = ["AgoraArguments"]
