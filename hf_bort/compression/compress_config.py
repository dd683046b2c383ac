"""`CompressConfig`: every setting of `hf_bort.compress` in one dataclass, as trl's `<Algo>Config` are.

`compress(model, train_dataset, eval_dataset, CompressConfig(...))` reads it, `hf-bort compress` parses it with
`HfArgumentParser` (each field is a flag with its help), and a rerun into the same `output_dir` resumes only when the
fields that decide the student match (`result_settings`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal


EXPORTS = ("onnx", "int8")
# Fields that change how the run reports or where it writes, never the student: a resume may differ in them.
_RUN_ONLY_FIELDS = (
    "output_dir",
    "overwrite_output_dir",
    "show_progress",
    "export",
    "latency_repeats",
    "latency_cache_dir",
)


@dataclass
class CompressConfig:
    """Settings of `hf_bort.compress`: the budget, the search, the recovery and what is written."""

    output_dir: str = field(metadata={"help": "Folder for the student, results.json, the model card and the search."})
    min_speedup: float = field(
        default=3.0,
        metadata={"help": "The budget: the student is at least this many times faster than the parent, as measured."},
    )
    speed: Literal["measured", "flops"] = field(
        default="measured",
        metadata={
            "help": "How the budget is read: measured CPU time on this machine (1 thread, alternating with the "
            "parent), or forward FLOPs (the same on every machine and under any load; the card states which)."
        },
    )
    # --- the search ---
    epsilon: float = field(default=0.5, metadata={"help": "OSE's ε in (0, 1]: the 1 + ε of its guarantee."})
    interval: int = field(default=5, metadata={"help": "OSE's s: final steps of each short run averaged into ê."})
    step_scale: float = field(default=10.0, metadata={"help": "OSE's K: steps per short run, ceil(K / (ε·sqrt(s)))."})
    max_candidates: int | None = field(
        default=16,
        metadata={"help": "Train at most this many candidates' short runs (the result states what the cap costs)."},
    )
    search_rows: int = field(
        default=2000, metadata={"help": "Training rows the search uses (a seeded sample; a fifth are held out for ê)."}
    )
    # MRPC >=6x (benchmarks/results/compress_fidelity/): after 9 steps most candidates' ê lay near 1 and ranked their
    # trained F1 with Kendall tau 0.38; after 36 steps, 0.65, its lowest ê being the best trained student. SST-2's ê
    # (0.3-0.7 after 9 steps) ranked better at 9 steps than at 36 (0.49 against -0.10 at >=3x), so only an
    # unresolved search runs longer.
    rescore_above: float | None = field(
        default=0.9,
        metadata={
            "help": "When the median ê of the evaluated candidates is at least this (1: no closer to the parent than "
            "a constant predictor), the short runs were too short to tell them apart: every candidate is estimated "
            "again with rescore_factor times the steps, and the choice reads those. None: never."
        },
    )
    rescore_factor: float = field(default=4.0, metadata={"help": "The longer short runs' steps, as a multiple."})
    search_seq_len: int = field(default=64, metadata={"help": "Tokens per row in the search's short runs."})
    # At OSE's general default (5e-5) nine steps barely move a candidate, and ê ranked compress's 16 candidates at
    # SST-2 >=6x against their trained accuracy with Kendall tau -0.08; at the recovery's rate, 0.71, at the same cost
    # (benchmarks/results/compress_fidelity/).
    search_learning_rate: float = field(default=3e-4, metadata={"help": "Learning rate of the search's short runs."})
    search_batch_size: int = field(default=8, metadata={"help": "Rows per step in the search's short runs."})
    importance: Literal["fisher", "group-taylor", "gradient", "magnitude", "activation"] = field(
        default="fisher",
        metadata={"help": "How the fine-tuned parent's heads, neurons and layers are ranked (fisher: its task loss)."},
    )
    allocation: Literal["importance", "uniform"] | None = field(
        default=None,
        metadata={"help": "Heads and FFN width per layer by importance (BERT layout's default) or every layer alike."},
    )
    num_heads: list[int] | None = field(default=None, metadata={"help": "Head counts to search (default: all)."})
    hidden_sizes: list[int] | None = field(default=None, metadata={"help": "Hidden sizes to search (default: steps)."})
    intermediate_sizes: list[int] | None = field(
        default=None, metadata={"help": "FFN widths to search (default: multiples of `step`)."}
    )
    step: int = field(default=64, metadata={"help": "Spacing of the default hidden and FFN grids."})
    halfway_epochs: float = field(
        default=0.0,
        metadata={
            "help": "Gradual compression: epochs of task distillation on a halfway model (every layer keeps half-way "
            "between the parent's and the student's heads and FFN neurons) before the student is cut from it, "
            "re-scored (0: cut in one step; BERT-layout parents)."
        },
    )
    # MRPC >=6x, the same chosen shape cut both ways (benchmarks/results/compress_gradual/check/): ê in 36 steps
    # 0.580 (one cut) against 0.602 (gradual), and trained the one cut scored 1.5 F1 higher; in 9 steps ê ranked them
    # the other way. At >=3x it keeps the gradual cut (0.345 against 0.553) though the one cut trains 1.2 F1 higher:
    # a student cut from a trained halfway model starts its short runs ahead, so only a damaged one is refused.
    gradual_check: bool = field(
        default=True,
        metadata={
            "help": "With halfway_epochs > 0: estimate the gradual and the one-cut student in short runs of "
            "rescore_factor x the search's steps, and keep the gradual one only when its ê is lower (False: always)."
        },
    )
    # --- the recovery ---
    recovery_epochs: float = field(
        default=2.0, metadata={"help": "Epochs of task distillation after extraction (0: ship the extracted model)."}
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "Learning rate of the recovery."})
    batch_size: int = field(default=32, metadata={"help": "Rows per recovery step."})
    max_length: int = field(default=128, metadata={"help": "Tokens per row in the recovery and the evaluation."})
    kd_alpha: float = field(
        default=0.5, metadata={"help": "Weight of the labels' loss; 1 - kd_alpha weighs the parent's predictions."}
    )
    kd_temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the distillation."})
    # Layer-wise matching (CoFi) on top of logit KD, same rows, epochs and seeds (leaderboard arm hf_bort_layerkd,
    # MiniLM/SST-2, 3 seeds): >=3x 0.8001 vs 0.8043, >=6x 0.7863 vs 0.7920, at 2.0-2.4x the training time: off.
    layer_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of layer-wise hidden-state matching to the parent (CoFi's recipe; 0: logits only)."},
    )
    # --- measuring and writing ---
    latency_repeats: int = field(default=11, metadata={"help": "Timed calls per model and shape (median kept)."})
    selection_margin: float = field(
        default=1.1,
        metadata={"help": "A candidate is chosen only if measured at least min_speedup x this (timings drift)."},
    )
    latency_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the search's latency predictions made on this machine, shared by compress runs into "
            "other output folders so they cut the search space alike (default: inside output_dir)."
        },
    )
    export: Literal["onnx", "int8"] | None = field(
        default=None, metadata={"help": "Also write an ONNX Runtime folder of the student: fp32 or dynamic int8."}
    )
    seed: int = field(default=0, metadata={"help": "Seeds the search's split and runs and the recovery."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an earlier compress run in output_dir (never a user's folder)."}
    )
    show_progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        for name in ("min_speedup", "learning_rate", "search_learning_rate", "kd_temperature", "selection_margin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}.")
        if self.speed not in ("measured", "flops"):
            raise ValueError(f"speed must be 'measured' (CPU time) or 'flops' (forward FLOPs), got {self.speed!r}.")
        if self.min_speedup < 1:
            raise ValueError(f"min_speedup must be at least 1 (the parent's own speed), got {self.min_speedup}.")
        for name in (
            "interval",
            "search_rows",
            "search_seq_len",
            "search_batch_size",
            "step",
            "batch_size",
            "max_length",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.rescore_above is not None and not (math.isfinite(self.rescore_above) and self.rescore_above > 0):
            raise ValueError(f"rescore_above must be a positive number or unset, got {self.rescore_above!r}.")
        if not (math.isfinite(self.rescore_factor) and self.rescore_factor >= 1):
            raise ValueError(f"rescore_factor must be at least 1, got {self.rescore_factor!r}.")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise ValueError(f"max_candidates must be a positive integer or unset, got {self.max_candidates!r}.")
        if not 0 <= self.kd_alpha <= 1:
            raise ValueError(f"kd_alpha must lie in [0, 1], got {self.kd_alpha!r}.")
        if self.recovery_epochs < 0 or self.layer_weight < 0 or self.halfway_epochs < 0:
            raise ValueError("recovery_epochs, halfway_epochs and layer_weight must be at least 0.")
        if self.export is not None and self.export not in EXPORTS:
            raise ValueError(f"export must be one of {', '.join(EXPORTS)} or unset, got {self.export!r}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def result_settings(self) -> dict:
        """The fields that decide the student: a resumed run must match them."""
        return {k: v for k, v in self.to_dict().items() if k not in _RUN_ONLY_FIELDS}


__all__ = ["CompressConfig"]
