"""The student a user would ship under a speed budget: one rule, which `hf_bort.compress`, the demo, the leaderboard
and `hf-bort compress` all call.

W and the Pareto front (`OSEResult.best`, `OSEResult.front`) are for reading: W trades size against error, so under
a budget it favours the cheapest candidate (a 12x model where 6x was asked). The shipped student is instead the
lowest estimated error among the evaluated candidates that meet the budget as measured (`measure_speedup`: CPU time,
1 thread, alternating with the parent), so a 5x model is shipped for a 3x budget only if no 3-4x candidate is
estimated better. Candidates are measured in order of ê until one meets the budget times `margin` (a margin keeps a
later measurement on a busier machine above the budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn
from transformers import AutoModel

from .latency import DEFAULT_SHAPES, measure_speedup
from .result import CandidateRecord, OSEResult


@dataclass
class Choice:
    """The chosen candidate, how fast it measured, and every candidate measured on the way (for the report)."""

    record: CandidateRecord
    speedup: dict
    tried: list[dict] = field(default_factory=list)


def choose_under_budget(
    result: OSEResult,
    parent: nn.Module,
    min_speedup: float,
    *,
    shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
    repeats: int = 11,
    margin: float = 1.0,
    max_measured: int = 12,
) -> Choice:
    """The evaluated candidate of lowest ê whose measured speed-up over `parent` is at least `min_speedup` x `margin`.

    Each candidate is built from its config (its per-layer sizes included: timing needs no weights) and timed against
    `parent`'s base model. At most `max_measured` candidates are timed; when none meets the budget, the error names
    the fastest one measured and its numbers.
    """
    if not (min_speedup > 0):
        raise ValueError(f"min_speedup must be a positive number, got {min_speedup!r}.")
    reference = parent.base_model
    tried = []
    for record in sorted(result.records, key=lambda r: (r.error, r.params))[:max_measured]:
        model = AutoModel.from_config(result.to_config(record.architecture))
        speed = measure_speedup(model, reference, shapes, repeats=repeats)
        tried.append({"architecture": record.architecture.as_dict(), "error": record.error, **speed.to_dict()})
        if speed.value >= min_speedup * margin:
            return Choice(record, speed.to_dict(), tried)
    if not tried:
        raise ValueError("The search evaluated no candidate; there is nothing to choose from.")
    fastest = max(tried, key=lambda t: t["speedup"])
    raise ValueError(
        f"No evaluated candidate is {min_speedup}x faster than the parent as measured (x{margin} margin; "
        f"{len(tried)} timed): the fastest is {fastest['architecture']} at {fastest['speedup']:.2f}x "
        f"({fastest['latency_ms']} ms against {fastest['reference_ms']} ms). Lower the budget, or search smaller "
        "candidates (a finer grid, a smaller epsilon)."
    )


__all__ = ["Choice", "choose_under_budget"]
