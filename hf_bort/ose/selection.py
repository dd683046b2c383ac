"""The student a user would ship under a speed budget: one rule, which `hf_bort.compress`, the demo, the leaderboard
and `hf-bort compress` all call.

W and the Pareto front (`OSEResult.best`, `OSEResult.front`) are for reading: W trades size against error, so under
a budget it favours the cheapest candidate (a 12x model where 6x was asked). The shipped student is instead the
lowest estimated error among the evaluated candidates that meet the budget as measured (`measure_speedup`: CPU time,
1 thread, alternating with the parent), so a 5x model is shipped for a 3x budget only if no 3-4x candidate is
estimated better. Candidates are measured in order of ê until one meets the budget times `margin` (a margin keeps a
later measurement on a busier machine above the budget); one the search already timed as built, alternately with the
parent on the same shapes, before training it (`CandidateRecord.timing`), is not timed again. With `speed="flops"`
the budget is read in forward FLOPs (`flops_speedup`) instead: the same on every machine and under any load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from torch import nn
from transformers import AutoModel

from .costs import flops_speedup, forward_mflops
from .latency import DEFAULT_SHAPES, measure_speedup, shape_name
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
    speed: Literal["measured", "flops"] = "measured",
) -> Choice:
    """The evaluated candidate of lowest ê whose speed-up over `parent` is at least `min_speedup` x `margin`.

    With `speed="measured"` each candidate is built from its config (its per-layer sizes included: timing needs no
    weights) and timed against `parent`'s base model; with `"flops"` its forward FLOPs are counted against the
    parent's. At most `max_measured` candidates are tried; when none meets the budget, the error names the fastest.
    """
    if not (min_speedup > 0):
        raise ValueError(f"min_speedup must be a positive number, got {min_speedup!r}.")
    if speed not in ("measured", "flops"):
        raise ValueError(f"speed must be 'measured' (CPU time) or 'flops' (forward FLOPs), got {speed!r}.")
    reference = parent.base_model
    reference_mflops = forward_mflops(reference.config, shapes) if speed == "flops" else None
    tried = []
    for record in sorted(result.records, key=lambda r: (r.error, r.params))[:max_measured]:
        config = result.to_config(record.architecture)
        if speed == "flops":
            numbers = flops_speedup(forward_mflops(config, shapes), reference_mflops)
        elif record.timing is not None and record.timing["protocol"]["shapes"] == [
            shape_name(*shape) for shape in shapes
        ]:
            numbers = record.timing  # the search timed it as built, by this protocol, before training it
        else:
            numbers = measure_speedup(AutoModel.from_config(config), reference, shapes, repeats=repeats).to_dict()
        tried.append({"architecture": record.architecture.as_dict(), "error": record.error, **numbers})
        if numbers["speedup"] >= min_speedup * margin:
            return Choice(record, numbers, tried)
    if not tried:
        raise ValueError("The search evaluated no candidate; there is nothing to choose from.")
    fastest = max(tried, key=lambda t: t["speedup"])
    cost, reference_cost, unit = ("mflops", "reference_mflops", "MFLOPs") if speed == "flops" else (
        "latency_ms", "reference_ms", "ms")  # fmt: skip
    raise ValueError(
        f"No evaluated candidate is {min_speedup}x faster than the parent by {speed} speed (x{margin} margin; "
        f"{len(tried)} tried): the fastest is {fastest['architecture']} at {fastest['speedup']:.2f}x "
        f"({fastest[cost]} {unit} against {fastest[reference_cost]} {unit}). Lower the budget, or search smaller "
        "candidates (a finer grid, a smaller epsilon)."
    )


__all__ = ["Choice", "choose_under_budget"]
