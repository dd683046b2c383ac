"""One latency protocol for every measured speed in the project: fixed threads, warm-up, repeats, median.

A single short timing of a model on a shared CPU can be off by 10x or more (the same MiniLM measured 1,464 ms, 43 ms
and 9 ms in three runs), so every latency that a constraint or a report relies on goes through `measure_latency_ms`,
and a speed-up is always the ratio of two measurements taken with the same protocol in the same process.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def measure_latency_ms(
    model: nn.Module,
    batch_size: int = 1,
    seq_len: int = 128,
    threads: int = 1,
    repeats: int = 10,
    warmup: int = 2,
) -> float:
    """Median wall-clock milliseconds of one forward pass over `batch_size` x `seq_len` token ids.

    The torch thread count is set to `threads` for the measurement and restored afterwards; the ids are fixed
    (seeded), so two models are timed on the same input. `warmup` passes run first and are not counted.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("threads", threads), ("repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 1000
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device  # time the model where it lives (CPU or an accelerator)
    ids = torch.randint(0, min(int(vocab), 1000), (batch_size, seq_len), generator=generator).to(device)
    mask = torch.ones_like(ids)
    previous = torch.get_num_threads()
    was_training = model.training
    torch.set_num_threads(threads)
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(max(0, warmup)):
                model(input_ids=ids, attention_mask=mask)
            runs = []
            for _ in range(repeats):
                if device.type != "cpu":
                    torch.accelerator.synchronize(device)
                start = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                if device.type != "cpu":
                    torch.accelerator.synchronize(device)  # kernels run asynchronously there
                runs.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous)
        model.train(was_training)
    return float(statistics.median(runs))


__all__ = ["measure_latency_ms"]
