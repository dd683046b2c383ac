"""`OSEConfig`: every setting of an OSE search in one dataclass, as trl's `<Algo>Config` and peft's configs are.

`OSESearch(parent, args=OSEConfig(...), train_dataset=...)` reads it, `hf-bort search` parses it with
`HfArgumentParser` (each field is a flag with its help), the result stores it, and a resumed search compares the
fields that decide a candidate's numbers (`result_settings`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Literal


OBJECTIVES = ("distill", "distill_layers", "task", "task_distill", "lm")  # each a class in ose/objectives.py
INFERENCE_COSTS = ("flops", "latency")
IMPORTANCE_METHODS = ("magnitude", "gradient", "group-taylor", "fisher", "activation")  # extract.IMPORTANCE_METHODS
HYPERPARAMETERS = ("learning_rate", "head_learning_rate", "weight_decay")

# Fields that change how the search runs or reports, never a candidate's numbers: a resume may differ in them.
# Constraints and the latency protocol only choose among finished candidates, so they too may change on a resume.
_RUN_ONLY_FIELDS = (
    "output_dir",
    "max_candidates",
    "monotone_bounds",
    "candidates_per_round",
    "show_progress",
    "max_params",
    "max_flops",
    "max_latency_ms",
    "min_speedup",
    "latency_threads",
    "latency_batch_size",
    "latency_seq_len",
    "latency_batch_sizes",
    "latency_repeats",
    "latency_fit_samples",
    "latency_calibration_probes",
    "latency_cache_dir",
    "wait_timeout",
)


@dataclass
class OSEConfig:
    """Settings of `OSESearch`; see `hf_bort.ose.search` for the algorithm they drive."""

    epsilon: float = field(
        default=0.1,
        metadata={"help": "The FPTAS's ε in (0, 1]: bucket width and training budget. Smaller keeps more candidates."},
    )
    interval: int = field(
        default=5, metadata={"help": "s: the number of final training steps whose loss is averaged into ê."}
    )
    objective: Literal["distill", "distill_layers", "task", "task_distill", "lm"] = field(
        default="distill",
        metadata={
            "help": "distill: match the parent's final hidden states on unlabelled text; distill_layers: every "
            "layer, matched as hf_bort.distill.layer_map does; task: labelled data, a fresh head; task_distill: a "
            "fine-tuned classifier parent's predicted labels (KL), its head carried over; lm (causal LMs): match the "
            "parent's next-token distributions (KL at temperature 1) on unlabelled text."
        },
    )
    max_steps: int | None = field(
        default=None, metadata={"help": "Cap on the per-setting budget ceil(step_scale / (ε·sqrt(interval)))."}
    )
    max_candidates: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate at most this many candidates (largest first). Where the cap leaves candidates open, the "
            "result says within which factor of the optimum the best W lies (result.guarantee)."
        },
    )
    monotone_bounds: bool = field(
        default=True,
        metadata={
            "help": "Skip candidates that cannot beat the best W found, assuming a candidate errs at least as much "
            "as any evaluated one that contains it (the assumption the 1 + ε guarantee rests on). False evaluates "
            "every kept candidate whose costs alone do not rule it out."
        },
    )
    candidates_per_round: int = field(
        default=4,
        metadata={
            "help": "Candidates evaluated between two updates of the bounds (in parallel over the processes). Fixed, "
            "so that the candidates evaluated do not depend on the number of processes."
        },
    )
    seq_len: int = field(default=64, metadata={"help": "Tokens per row in the short training runs and in FLOPs."})
    batch_size: int = field(default=8, metadata={"help": "Rows per step in the short training runs."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the candidates' short runs."})
    head_learning_rate: float = field(
        default=1e-3, metadata={"help": "Learning rate of the fresh task head (objective 'task')."}
    )
    inference_cost: Literal["flops", "latency"] = field(
        default="flops", metadata={"help": "i(ξ): closed-form FLOPs, or latency from a model fitted on this device."}
    )
    importance: Literal["magnitude", "gradient", "group-taylor", "fisher", "activation"] = field(
        default="magnitude",
        metadata={
            "help": "How extraction ranks the parent's layers, heads, neurons and hidden dims: |w| (magnitude), "
            "per-weight Taylor (gradient), the parent's loss change of removing each group (group-taylor) or its "
            "square (fisher), or mean |activation| (activation, Minitron's, suits decoders)."
        },
    )
    weights: list[float] = field(
        default_factory=lambda: [1.0, 1.0, 1.0], metadata={"help": "(w_p, w_i, w_e) of the W-coefficient."}
    )
    text_column: list[str] | None = field(
        default=None, metadata={"help": "Text column (or two, for pairs); found automatically when unset."}
    )
    label_column: str = field(default="label", metadata={"help": "Label column for objective 'task'."})
    seed: int = field(default=0, metadata={"help": "Seeds each candidate's run (with its architecture)."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Candidates are appended here as they finish; rerunning with it resumes."}
    )
    max_params: float | None = field(
        default=None, metadata={"help": "Constraint: the best point has at most this many parameters."}
    )
    max_flops: float | None = field(
        default=None, metadata={"help": "Constraint: the best point needs at most this many FLOPs at seq_len."}
    )
    max_latency_ms: float | None = field(
        default=None,
        metadata={"help": "Constraint: the best point's latency measured on this device is at most this (ms)."},
    )
    min_speedup: float | None = field(
        default=None,
        metadata={"help": "Constraint: the best point is at least this many times faster than the parent, measured."},
    )
    latency_threads: int = field(default=1, metadata={"help": "Torch threads for the measured latency constraints."})
    latency_batch_size: int = field(
        default=1, metadata={"help": "Rows per forward pass (each seq_len tokens) when measuring latency."}
    )
    latency_seq_len: int | None = field(
        default=None, metadata={"help": "Tokens per row when measuring latency (default: seq_len)."}
    )
    latency_batch_sizes: list[int] | None = field(
        default=None,
        metadata={
            "help": "Batch sizes (each latency_seq_len tokens) a candidate is timed at against min_speedup before it "
            "trains: the smallest ratio counts, as when a budget is checked on several shapes (compress: 1 8). "
            "Default: latency_batch_size alone."
        },
    )
    latency_repeats: int = field(
        default=10, metadata={"help": "Timed passes per model (after 2 warm-up passes); the median is kept."}
    )
    latency_fit_samples: int = field(
        default=24,
        metadata={
            "help": "Candidates timed to fit the latency model that predicts which candidates meet a latency limit."
        },
    )
    latency_calibration_probes: int = field(
        default=8,
        metadata={
            "help": "Candidates predicted nearest a latency or speed-up limit, timed as each candidate is before it "
            "trains (its per-layer sizes, every batch size, alternating with the parent), to scale the fitted "
            "prediction to those measurements (0: the fit alone)."
        },
    )
    latency_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of latency predictions made on this machine (the fit and its calibration), one file per "
            "space, protocol, limits and machine: a search that finds its own reuses it instead of timing again, so "
            "searches sharing the folder cut the space alike. Default: latency/ in output_dir (a resumed search cuts "
            "as the interrupted one did); none without an output_dir."
        },
    )
    wait_timeout: float = field(
        default=3600.0,
        metadata={
            "help": "Seconds to wait for candidates that another live search into the same output_dir is evaluating."
        },
    )
    hyperparameter_space: list[float] | None = field(
        default=None,
        metadata={
            "help": "Θ: the settings each candidate's short run is tried under; its ê is the best over them. "
            "Learning rates (e.g. 5e-5 2e-4), or in Python dicts over learning_rate, head_learning_rate, "
            "weight_decay. Default: the single setting learning_rate / head_learning_rate."
        },
    )
    holdout_fraction: float = field(
        default=0.2,
        metadata={
            "help": "Share of the training texts held out to score ê when no eval dataset is given (seeded split); "
            "the short runs, projections and heads only see the rest."
        },
    )
    step_scale: float = field(
        default=30.0,
        metadata={"help": "K in the per-setting step budget ceil(K / (ε·sqrt(interval))), at least interval."},
    )
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        if not (isinstance(self.epsilon, (int, float)) and 0 < self.epsilon <= 1 and math.isfinite(self.epsilon)):
            raise ValueError(f"epsilon must be in (0, 1], got {self.epsilon!r}; e.g. 0.5 for a quick search.")
        self.epsilon = float(self.epsilon)
        if self.output_dir is not None:
            self.output_dir = os.fspath(self.output_dir)
        if self.latency_cache_dir is not None:
            self.latency_cache_dir = os.fspath(self.latency_cache_dir)
        _check_positive_int("interval", self.interval)
        for name in ("seq_len", "batch_size"):
            _check_positive_int(name, getattr(self, name))
        _check_positive_int("candidates_per_round", self.candidates_per_round)
        for name in ("max_steps", "max_candidates"):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))
        for name, value, allowed in (
            ("objective", self.objective, OBJECTIVES),
            ("inference_cost", self.inference_cost, INFERENCE_COSTS),
            ("importance", self.importance, IMPORTANCE_METHODS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        for name in ("max_params", "max_flops", "max_latency_ms", "min_speedup", "wait_timeout"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}; leave it unset for no limit.")
        for name in ("latency_threads", "latency_batch_size", "latency_repeats"):
            _check_positive_int(name, getattr(self, name))
        if self.latency_seq_len is not None:
            _check_positive_int("latency_seq_len", self.latency_seq_len)
        if not (isinstance(self.latency_fit_samples, int) and self.latency_fit_samples >= 4):
            raise ValueError(
                f"latency_fit_samples must be an integer of at least 4 (a fit and a held-out check), got "
                f"{self.latency_fit_samples!r}."
            )
        if not (isinstance(self.latency_calibration_probes, int) and self.latency_calibration_probes >= 0):
            raise ValueError(
                f"latency_calibration_probes must be a non-negative integer (0: no calibration), got "
                f"{self.latency_calibration_probes!r}."
            )
        if self.latency_batch_sizes is not None:
            if not self.latency_batch_sizes:
                raise ValueError(
                    "latency_batch_sizes must name at least one batch size, e.g. [1, 8]; or leave it unset."
                )
            for value in self.latency_batch_sizes:
                _check_positive_int("each of latency_batch_sizes", value)
        if not (0 < self.holdout_fraction < 1):
            raise ValueError(f"holdout_fraction must lie in (0, 1), got {self.holdout_fraction!r}; e.g. 0.2.")
        if not (self.step_scale > 0 and math.isfinite(self.step_scale)):
            raise ValueError(f"step_scale must be a positive number, got {self.step_scale!r}; e.g. 30.")
        self.hyperparameter_space = self._settings(self.hyperparameter_space)
        self.weights = [float(w) for w in self.weights]
        if len(self.weights) != 3 or min(self.weights) < 0 or max(self.weights) <= 0:
            raise ValueError(f"weights must be three non-negative numbers (w_p, w_i, w_e), got {self.weights!r}.")
        if isinstance(self.text_column, str):
            self.text_column = [self.text_column]
        if self.text_column is not None and not 1 <= len(self.text_column) <= 2:
            raise ValueError(f"text_column names one column or a pair, got {self.text_column!r}.")

    def _settings(self, space) -> list[dict]:
        """Θ as a list of dicts with every key filled: a bare number is a learning rate."""
        if space is None:
            space = [self.learning_rate]
        if isinstance(space, (int, float, dict)):
            space = [space]
        if len(space) == 0:
            raise ValueError("hyperparameter_space is empty; give at least one setting, e.g. [5e-5, 2e-4].")
        settings = []
        for entry in space:
            entry = {"learning_rate": entry} if isinstance(entry, (int, float)) else dict(entry)
            unknown = sorted(set(entry) - set(HYPERPARAMETERS))
            if unknown:
                raise ValueError(
                    f"hyperparameter_space setting {entry} has unknown keys {unknown}; known: {list(HYPERPARAMETERS)}."
                )
            entry = {
                "learning_rate": float(entry.get("learning_rate", self.learning_rate)),
                "head_learning_rate": float(entry.get("head_learning_rate", self.head_learning_rate)),
                "weight_decay": float(entry.get("weight_decay", 0.0)),
            }
            if not all(math.isfinite(v) and v >= 0 for v in entry.values()) or entry["learning_rate"] <= 0:
                raise ValueError(f"hyperparameter_space setting {entry} needs a positive learning rate and no NaN.")
            settings.append(entry)
        return settings

    @property
    def steps(self) -> int:
        """Optimiser steps of one short run (per candidate and setting of Θ): ceil(K / (ε·sqrt(s))), at least s.

        The paper bounds the search's runtime by |Θ||B||Ξ| / (ε·s^{3/2}) without giving the per-candidate budget.
        We read the bound as counting averaging windows of s steps (over |B| rows each): K / (ε·s^{3/2}) windows per
        candidate and setting, each s steps long, i.e. K / (ε·sqrt(s)) steps. A tighter ε buys a proportionally
        longer run; a longer averaging window (larger s) already steadies ê, so it needs fewer steps, and the total
        |Θ|·|Ξ|·steps·(rows per step) shrinks with s as the bound does. K is `step_scale`; `max_steps` caps it.
        """
        steps = max(self.interval, math.ceil(self.step_scale / (self.epsilon * math.sqrt(self.interval)) - 1e-9))
        return steps if self.max_steps is None else max(self.interval, min(steps, self.max_steps))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> OSEConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown OSEConfig fields {unknown}; known fields are {sorted(known)}.")
        return cls(**values)

    def constraints(self) -> dict[str, float]:
        """The constraints that are set, by name (`max_params`, `max_flops`, `max_latency_ms`, `min_speedup`)."""
        names = ("max_params", "max_flops", "max_latency_ms", "min_speedup")
        return {name: float(getattr(self, name)) for name in names if getattr(self, name) is not None}

    def result_settings(self) -> dict:
        """The fields that decide a candidate's numbers, with the step budget they imply."""
        values = {k: v for k, v in self.to_dict().items() if k not in _RUN_ONLY_FIELDS}
        return {**values, "steps": self.steps}


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


__all__ = ["OSEConfig"]
