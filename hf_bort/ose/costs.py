"""Closed-form costs of every candidate in a `SearchSpace`, vectorised over the whole grid.

* p(ξ), `parameter_count`: the exact number of parameters of the family's base model (`AutoModel`) built
  from the candidate's config, i.e. `sum(p.numel() for p in model.parameters())`.
* i(ξ), `inference_flops`: floating-point operations of one forward pass over a sequence of `seq_len` tokens
  (batch 1): 2 per multiply-accumulate in every matmul (projections, FFN, QKᵀ and attention x V), plus the
  element-wise work of softmax, activations and norms at the per-element constants below. Embedding lookups
  are free; DeBERTa's relative-position attention terms are not counted.
* `LatencyModel`: measured latency on the current device, fitted on a sample of candidates, for when
  wall-clock time rather than operation count is the inference cost.

All functions take a `SearchSpace` and return one float64 value per candidate, in the space's order.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch


if TYPE_CHECKING:  # space.py imports this module to filter by cost; costs read a space only through its methods
    from .space import Architecture, SearchSpace


# Element-wise FLOPs per element: LayerNorm (mean, variance, normalise, scale and shift), RMSNorm, softmax
# (max, subtract, exp, sum, divide) and the FFN activation (GELU's tanh approximation, SiLU).
_LAYER_NORM_FLOPS = 8
_RMS_NORM_FLOPS = 4
_SOFTMAX_FLOPS = 5
_ACTIVATION_FLOPS = 8


def _dims(space: SearchSpace) -> tuple[np.ndarray, ...]:
    arrays = space.arrays()
    depth, heads, hidden, inter = (arrays[d].astype(np.float64) for d in ("depth", "heads", "hidden", "intermediate"))
    shape = space.shape
    head_dim = np.full_like(hidden, shape.fixed_head_dim) if shape.fixed_head_dim else hidden // heads
    attn_width = heads * head_dim
    kv_width = (heads // shape.kv_group) * head_dim
    return depth, heads, hidden, inter, attn_width, kv_width


def _norm_params(kind: str, width: np.ndarray) -> np.ndarray:
    return {"layer": 2 * width, "rms": width, "none": 0 * width}[kind]


def parameter_count(space: SearchSpace) -> np.ndarray:
    """p(ξ) for every candidate: the exact parameter count of the base model built from its config."""
    shape, family = space.shape, space.shape.family
    depth, heads, hidden, inter, attn_width, kv_width = _dims(space)
    emb = shape.embedding_width(hidden) * np.ones_like(hidden)

    embeddings = shape.vocab_size * emb + shape.type_vocab_size * emb
    if shape.learned_positions:
        embeddings = embeddings + shape.max_positions * emb
    if family.embedding_norm == "layer":
        # DeBERTa normalises after projecting to H; ALBERT and ELECTRA normalise the factorised width.
        embeddings = embeddings + _norm_params(
            "layer", hidden if family.factorized_embeddings == "if_different_nobias" else emb
        )
    projects = (emb != hidden) | (family.factorized_embeddings == "always")
    if family.factorized_embeddings in ("always", "if_different"):
        embeddings = embeddings + np.where(projects, emb * hidden + hidden, 0)
    elif family.factorized_embeddings == "if_different_nobias":
        embeddings = embeddings + np.where(projects, emb * hidden, 0)

    attention = hidden * (attn_width + 2 * kv_width) + attn_width * hidden
    attention = attention + (attn_width + 2 * kv_width) * shape.qkv_bias + hidden * shape.out_bias
    attention = attention + shape.position_projections * (hidden * attn_width + attn_width)
    n_ffn_in = 2 if family.gated_mlp else 1
    ffn = (n_ffn_in + 1) * hidden * inter + (n_ffn_in * inter + hidden) * shape.mlp_bias
    block = attention + ffn + 2 * _norm_params(family.layer_norm, hidden)
    n_blocks = np.minimum(shape.layer_groups, depth) * shape.inner_group_num if family.shared_layers else depth

    head = _norm_params(family.final_norm, hidden)
    if family.pooler:
        head = head + hidden * hidden + hidden
    if shape.relative_table:
        head = head + shape.relative_table * hidden + (2 * hidden if shape.relative_norm else 0)
    if shape.conv_kernel > 0:
        head = head + hidden * hidden * shape.conv_kernel / shape.conv_groups + 3 * hidden
    return embeddings + n_blocks * block + head


def flops_breakdown(space: SearchSpace, seq_len: int = 128) -> dict[str, np.ndarray]:
    """i(ξ) split into matmul, attention (n² terms), element-wise and per-layer-count parts (features for latency).

    "softmax" is the per-head share of "attention" (heads x n², the only term that grows with the head count at a
    fixed width), returned apart so a latency fit can price it at its own, much higher, cost per FLOP on a CPU.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len}.")
    shape, family = space.shape, space.shape.family
    n = float(seq_len)
    depth, heads, hidden, inter, attn_width, kv_width = _dims(space)
    applications = depth * shape.inner_group_num if family.shared_layers else depth
    emb = shape.embedding_width(hidden) * np.ones_like(hidden)
    norm = _LAYER_NORM_FLOPS if family.layer_norm == "layer" else _RMS_NORM_FLOPS
    n_ffn_in = 2 if family.gated_mlp else 1

    block_matmul = 2 * n * hidden * (attn_width + 2 * kv_width) + 2 * n * attn_width * hidden
    block_matmul = block_matmul + 2 * n * hidden * inter * (n_ffn_in + 1)
    block_softmax = (_SOFTMAX_FLOPS + 1) * heads * n * n
    block_attention = 4 * n * n * attn_width + block_softmax
    block_elementwise = (_ACTIVATION_FLOPS + n_ffn_in - 1) * n * inter + 2 * norm * n * hidden + 2 * n * hidden

    projects = (emb != hidden) | (family.factorized_embeddings == "always")
    head_matmul = np.where(projects & (family.factorized_embeddings != "none"), 2 * n * emb * hidden, 0)
    if family.pooler:
        head_matmul = head_matmul + 2 * hidden * hidden
    tables = 1 + shape.learned_positions + (shape.type_vocab_size > 0)
    head_elementwise = (tables - 1) * n * emb
    if family.embedding_norm == "layer":
        head_elementwise = head_elementwise + _LAYER_NORM_FLOPS * n * emb
    if family.final_norm != "none":
        head_elementwise = head_elementwise + norm * n * hidden
    return {
        "matmul": applications * block_matmul + head_matmul,
        "attention": applications * block_attention,
        "softmax": applications * block_softmax,
        "elementwise": applications * block_elementwise + head_elementwise,
        "layers": applications,
    }


def inference_flops(space: SearchSpace, seq_len: int = 128) -> np.ndarray:
    """i(ξ) for every candidate: FLOPs of one forward pass over `seq_len` tokens (batch 1)."""
    parts = flops_breakdown(space, seq_len)
    return parts["matmul"] + parts["attention"] + parts["elementwise"]


def costs_of(space: SearchSpace, arch: Architecture, seq_len: int = 128) -> tuple[float, float]:
    """(p, i) of one architecture of `space`'s family, which need not be on the space's grid."""
    single = type(space).from_architectures(space, [arch])
    return float(parameter_count(single)[0]), float(inference_flops(single, seq_len)[0])


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the non-dominated rows of `points` (N x k), every column minimised.

    A row is dominated when another is <= in every column and < in one (exact duplicates of a front point stay).
    Two columns use an O(N log N) sweep over the distinct points (the whole BERT-large grid in milliseconds); more
    columns compare all pairs, in blocks.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    if points.shape[1] == 2:
        unique, inverse = np.unique(points, axis=0, return_inverse=True)  # sorted by column 0, then column 1
        best_before = np.concatenate(([np.inf], np.minimum.accumulate(unique[:-1, 1])))
        return np.flatnonzero((unique[:, 1] < best_before)[inverse.reshape(-1)])
    dominated = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), 1024):
        block = points[start : start + 1024]
        le = (points[None, :, :] <= block[:, None, :]).all(-1)
        lt = (points[None, :, :] < block[:, None, :]).any(-1)
        dominated[start : start + 1024] = (le & lt).any(1)
    return np.flatnonzero(~dominated)


@dataclass
class LatencyModel:
    """Latency in milliseconds predicted from the FLOP breakdown by a non-negative linear fit.

    Fitted on candidates timed on the current device; `holdout_error` is the mean absolute percentage error on
    candidates the fit did not see, so a user knows how far to trust it before using it as i(ξ). `coefficients`
    are a constant, then one per feature of `_FEATURES`; the softmax feature is what lets the fit tell head counts
    apart at a fixed width, so OSE's trimming keeps head variants wherever this device's latency does.
    """

    coefficients: list[float]
    seq_len: int
    batch_size: int
    holdout_error: float
    n_fitted: int
    n_holdout: int

    _FEATURES = ("matmul", "attention", "softmax", "elementwise", "layers")

    def __post_init__(self) -> None:
        if len(self.coefficients) != len(self._FEATURES) + 1:
            raise ValueError(
                f"A LatencyModel needs {len(self._FEATURES) + 1} coefficients (a constant, then "
                f"{', '.join(self._FEATURES)}), got {len(self.coefficients)}; refit it with LatencyModel.fit(space)."
            )

    @classmethod
    def _features(cls, space: SearchSpace, seq_len: int, batch_size: int) -> np.ndarray:
        """Columns: a constant, then the FLOP parts (x batch) and the number of layer applications."""
        parts = flops_breakdown(space, seq_len)
        columns = [np.ones(len(space))] + [parts[f] * (batch_size if f != "layers" else 1) for f in cls._FEATURES]
        return np.stack(columns, axis=1)

    @classmethod
    def fit(
        cls,
        space: SearchSpace,
        *,
        n_samples: int = 24,
        holdout_fraction: float = 0.25,
        seq_len: int = 128,
        batch_size: int = 1,
        repeats: int = 3,
        seed: int = 0,
    ) -> LatencyModel:
        """Time `n_samples` random candidates of `space` (base models, random weights) and fit the model."""
        from transformers import AutoModel

        if n_samples < 4:
            raise ValueError(f"n_samples must be at least 4 (a fit and a held-out check), got {n_samples}.")
        rng = np.random.default_rng(seed)
        sample = space.subset(rng.choice(len(space), size=min(n_samples, len(space)), replace=False))
        ids = torch.randint(0, min(space.shape.vocab_size, 1000), (batch_size, seq_len))
        times = []
        for arch in sample:
            model = AutoModel.from_config(space.to_config(arch)).eval()
            with torch.inference_mode():
                model(input_ids=ids)  # warm-up
                runs = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(input_ids=ids)
                    runs.append((time.perf_counter() - start) * 1000)
            times.append(statistics.median(runs))
        return cls.from_timings(
            sample, times, seq_len=seq_len, batch_size=batch_size, holdout_fraction=holdout_fraction
        )

    @classmethod
    def from_timings(
        cls,
        sample: SearchSpace,
        times_ms: Sequence[float],
        *,
        seq_len: int = 128,
        batch_size: int = 1,
        holdout_fraction: float = 0.25,
    ) -> LatencyModel:
        """The fit itself, from latencies already measured (e.g. on the deployment device) for `sample`'s candidates.

        The first `holdout_fraction` of the candidates score the fit made without them; the returned model is then
        refitted on every timing.
        """
        from scipy.optimize import nnls

        times = np.asarray(times_ms, dtype=np.float64)
        if times.shape != (len(sample),) or not np.isfinite(times).all() or (times <= 0).any():
            raise ValueError(f"times_ms must hold one positive latency per candidate ({len(sample)}), got {times}.")
        features = cls._features(sample, seq_len, batch_size)
        scale = np.maximum(features.max(axis=0), 1.0)  # well-conditioned columns for the solver
        design = features / scale
        n_holdout = max(1, int(round(holdout_fraction * len(sample))))
        weights, _ = nnls(design[n_holdout:], times[n_holdout:])
        predicted = design[:n_holdout] @ weights
        error = float(np.mean(np.abs(predicted - times[:n_holdout]) / times[:n_holdout]))
        weights, _ = nnls(design, times)  # refit on every timing; the reported error stays the held-out one
        return cls((weights / scale).tolist(), seq_len, batch_size, error, len(sample) - n_holdout, n_holdout)

    def predict(self, space: SearchSpace) -> np.ndarray:
        """Predicted latency (ms) of every candidate of `space`."""
        return self._features(space, self.seq_len, self.batch_size) @ np.asarray(self.coefficients)


__all__ = [
    "LatencyModel",
    "costs_of",
    "flops_breakdown",
    "inference_flops",
    "parameter_count",
    "pareto_front",
]
