"""One latency protocol for every measured speed in the project: fixed threads, warm-up, repeats, median.

A single short timing of a model on a shared CPU can be off by 10x or more (the same MiniLM measured 1,464 ms, 43 ms
and 9 ms in three runs), so every latency that a constraint or a report relies on goes through this module:

* `measure_latency_ms`: one model's median milliseconds per forward pass;
* `measure_speedup`: a model against a reference (the parent), timed alternately call by call on each input shape,
  so that a change in the machine's load hits both and their ratio stays honest; the speed-up is the smallest
  ratio over the shapes;
* `measure_speedups`: several models against one reference in one such loop, the reference timed once for all.

On a CPU with one thread the clock is `time.process_time`, this process's CPU time, which other jobs on a shared
machine inflate far less than wall time (they still share caches and memory bandwidth); with several threads, or on
an accelerator (synchronised around each call), it is wall time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


# What the speed budgets of `hf_bort.compress`, the demo and the leaderboard are checked on: one sequence and a
# batch of eight, 128 tokens each.
DEFAULT_SHAPES = ((1, 128), (8, 128))


def shape_name(batch_size: int, seq_len: int) -> str:
    """How an input shape is named in every timing and FLOP count (`Speedup`, `forward_mflops`): "1x128"."""
    return f"{batch_size}x{seq_len}"


def _check_positive(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")


@contextmanager
def _protocol(models: Sequence[nn.Module], threads: int) -> Iterator:
    """Eval mode and `threads` torch threads for the measurement; both restored afterwards."""
    previous = torch.get_num_threads()
    modes = [m.training for m in models]
    torch.set_num_threads(threads)
    for m in models:
        m.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)
        for m, mode in zip(models, modes):
            m.train(mode)


def _inputs(models: Sequence[nn.Module], batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """Fixed (seeded) token ids within every model's vocabulary, on the first model's device: models see the same."""
    vocab = min(int(getattr(getattr(m, "config", None), "vocab_size", None) or 1000) for m in models)
    generator = torch.Generator().manual_seed(0)
    device = next(models[0].parameters()).device
    ids = torch.randint(0, min(vocab, 1000), (batch_size, seq_len), generator=generator).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _timed_call(model: nn.Module, inputs: dict, threads: int) -> float:
    """Milliseconds of one forward pass by the protocol's clock."""
    device = next(model.parameters()).device
    cpu_time = device.type == "cpu" and threads == 1
    clock = time.process_time if cpu_time else time.perf_counter
    if device.type != "cpu":
        torch.accelerator.synchronize(device)
    start = clock()
    model(**inputs)
    if device.type != "cpu":
        torch.accelerator.synchronize(device)  # kernels run asynchronously there
    return (clock() - start) * 1000


def measure_latency_ms(
    model: nn.Module,
    batch_size: int = 1,
    seq_len: int = 128,
    threads: int = 1,
    repeats: int = 10,
    warmup: int = 2,
) -> float:
    """Median milliseconds of one forward pass over `batch_size` x `seq_len` token ids (see the module docstring).

    The torch thread count is set to `threads` for the measurement and restored afterwards; the ids are fixed
    (seeded), so two models are timed on the same input. `warmup` passes run first and are not counted.
    """
    _check_positive(batch_size=batch_size, seq_len=seq_len, threads=threads, repeats=repeats)
    inputs = _inputs([model], batch_size, seq_len)
    with _protocol([model], threads):
        for _ in range(max(0, warmup)):
            model(**inputs)
        runs = [_timed_call(model, inputs, threads) for _ in range(repeats)]
    return float(statistics.median(runs))


@dataclass
class Speedup:
    """A model timed against a reference, alternately, per input shape ("1x128": batch x tokens)."""

    latency_ms: dict[str, float]
    reference_ms: dict[str, float]
    threads: int
    repeats: int | dict[str, int]  # per shape where the shapes were timed with different counts (`combine`)

    @classmethod
    def combine(cls, parts: Sequence[Speedup]) -> Speedup:
        """One model's timings on several shapes, each from its own loop (`measure_speedups`), as one."""
        if not parts:
            raise ValueError("No shape was timed: name at least one (batch, tokens) shape.")
        repeats = {name: part.repeats for part in parts for name in part.latency_ms}
        counts = set(repeats.values())
        return cls(
            {name: ms for part in parts for name, ms in part.latency_ms.items()},
            {name: ms for part in parts for name, ms in part.reference_ms.items()},
            parts[0].threads,
            counts.pop() if len(counts) == 1 else repeats,
        )

    @property
    def ratios(self) -> dict[str, float]:
        return {shape: self.reference_ms[shape] / self.latency_ms[shape] for shape in self.latency_ms}

    @property
    def value(self) -> float:
        """The speed-up a budget is checked on: the smallest over the shapes."""
        return min(self.ratios.values())

    def to_dict(self) -> dict:
        return {
            "speedup": self.value,
            "ratios": self.ratios,
            "latency_ms": self.latency_ms,
            "reference_ms": self.reference_ms,
            "protocol": {"threads": self.threads, "repeats": self.repeats, "shapes": list(self.latency_ms)},
        }


def measure_speedup(
    model: nn.Module,
    reference: nn.Module,
    shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
    threads: int = 1,
    repeats: int = 11,
    warmup: int = 2,
) -> Speedup:
    """`model` against `reference` on each (batch, tokens) shape: the two run alternately, call by call, after
    warm-up, and each keeps its median (see the module docstring)."""
    _check_positive(threads=threads, repeats=repeats)
    return Speedup.combine(
        [measure_speedups([model], reference, shape, threads, repeats, warmup)[0] for shape in shapes]
    )


def measure_speedups(
    models: Sequence[nn.Module],
    reference: nn.Module,
    shape: tuple[int, int],
    threads: int = 1,
    repeats: int = 11,
    warmup: int = 2,
) -> list[Speedup]:
    """Several models against one reference on one (batch, tokens) shape, in one alternating loop: each round calls
    every model and then the reference, so the reference (the parent, the slowest model by far) is timed once for
    all of them while a change in the machine's load still hits them all alike. The search times each round of
    candidates so: the parent took three quarters of the time when timed once per candidate."""
    _check_positive(threads=threads, repeats=repeats)
    batch_size, seq_len = shape
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    name = shape_name(batch_size, seq_len)
    timed = [*models, reference]
    with _protocol(timed, threads):
        inputs = _inputs(timed, batch_size, seq_len)
        for _ in range(max(0, warmup)):
            for model in timed:
                model(**inputs)
        runs = [[] for _ in timed]
        for _ in range(repeats):
            for model, calls in zip(timed, runs):
                calls.append(_timed_call(model, inputs, threads))
    *medians, reference_ms = (float(statistics.median(calls)) for calls in runs)
    return [Speedup({name: ms}, {name: reference_ms}, threads, repeats) for ms in medians]


__all__ = ["DEFAULT_SHAPES", "Speedup", "measure_latency_ms", "measure_speedup", "measure_speedups", "shape_name"]
