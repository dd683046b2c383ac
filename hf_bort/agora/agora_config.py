"""`AgoraArguments`: the `TrainingArguments` of an Agora run."""

import json
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments


@dataclass
class AgoraArguments(TrainingArguments):
    """Training arguments plus the knobs of Agora's rounds, sampler and teacher.

    Each round trains `epochs_per_round` epochs (`num_train_epochs` is not used; `max_steps`, when set, is the
    budget of one round) with a fresh optimizer and learning-rate schedule, starting from the current weights.
    A warm restart per round is deliberate: the data changes between rounds, and a schedule that decayed to zero
    in round one would leave nothing to learn the new examples with.
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
        metadata={"help": "Sampler name: 'embedding_neighbours' or 'masked_lm' (or pass `sampler=` to the trainer)."},
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
        metadata={"help": "Stop after this many consecutive rounds without a lower dev error (0 disables)."},
    )
    agora_replay: bool = field(
        default=False,
        metadata={
            "help": "Replay: after a round that does not lower the dev error, go back to the best weights before "
            "the next round (which then retrains from them on the grown set); the run ends on the best weights."
        },
    )
    soft_labels: bool = field(
        default=False, metadata={"help": "Keep the teacher's probabilities and add a distillation loss on them."}
    )
    distill_alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of the distillation term (on generated rows) added to the cross-entropy (soft_labels only)."
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
        if isinstance(self.agora_sampler_kwargs, str):
            self.agora_sampler_kwargs = json.loads(self.agora_sampler_kwargs)
        self.agora_sampler_kwargs = dict(self.agora_sampler_kwargs or {})
        if self.remove_unused_columns:
            raise ValueError(
                "AgoraArguments.remove_unused_columns must be False: Agora keeps the raw text columns and tokenises "
                "them itself."
            )
        checks = {
            "agora_rounds": self.agora_rounds >= 1,
            "epochs_per_round": self.epochs_per_round > 0,
            "samples_per_error": self.samples_per_error >= 1,
            "replace_fraction": 0 < self.replace_fraction <= 1,
            "num_neighbours": self.num_neighbours >= 1,
            "agora_patience": self.agora_patience >= 0,
            "distill_alpha": 0 <= self.distill_alpha <= 1,
            "distill_temperature": self.distill_temperature > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"AgoraArguments.{name}={getattr(self, name)!r} is out of range.")
        if self.pair_perturbation not in ("first", "second", "both", "either"):
            raise ValueError(
                f"pair_perturbation={self.pair_perturbation!r}; choose 'first', 'second', 'both' or 'either'."
            )
