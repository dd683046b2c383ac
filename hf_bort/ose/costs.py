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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .latency import shape_name


if TYPE_CHECKING:  # space.py imports this module to filter by cost; costs read a space only through its methods
    from .space import Architecture, ConfigShape, SearchSpace


# Element-wise FLOPs per element: LayerNorm (mean, variance, normalise, scale and shift), RMSNorm, softmax
# (max, subtract, exp, sum, divide) and the FFN activation (GELU's tanh approximation, SiLU).
_LAYER_NORM_FLOPS = 8
_RMS_NORM_FLOPS = 4
_SOFTMAX_FLOPS = 5
_ACTIVATION_FLOPS = 8


def _norm_params(kind: str, width: np.ndarray) -> np.ndarray:
    return {"layer": 2 * width, "rms": width, "none": 0 * width}[kind]


@dataclass
class _Layers:
    """Per candidate (or, for `config_costs`, per layer): the widths the cost formulas read, as float arrays.

    `attention` / `mlp` are 1 where the sub-layer exists and 0 where it is skipped; `blocks` is how many blocks hold
    weights and `applications` how many run (they differ for ALBERT's shared groups)."""

    hidden: np.ndarray
    heads: np.ndarray
    attn_width: np.ndarray
    kv_width: np.ndarray
    inter: np.ndarray
    attention: np.ndarray | float = 1.0
    mlp: np.ndarray | float = 1.0
    blocks: np.ndarray | float = 1.0
    applications: np.ndarray | float = 1.0


def _grid_layers(space: SearchSpace, shape: ConfigShape) -> _Layers:
    arrays = space.arrays()
    depth, heads, hidden, inter, head_dim = (
        arrays[d].astype(np.float64) for d in ("depth", "heads", "hidden", "intermediate", "head_dim")
    )
    family = shape.family
    return _Layers(
        hidden=hidden,
        heads=heads,
        attn_width=heads * head_dim,
        kv_width=(heads // shape.kv_group) * head_dim,
        inter=inter,
        blocks=np.minimum(shape.layer_groups, depth) * shape.inner_group_num if family.shared_layers else depth,
        applications=depth * shape.inner_group_num if family.shared_layers else depth,
    )


def _outer_params(shape: ConfigShape, hidden: np.ndarray) -> np.ndarray:
    """Everything outside the blocks: embeddings (and their projection and norm), final norm, pooler, DeBERTa's
    relative-position table and convolution."""
    family = shape.family
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
    head = _norm_params(family.final_norm, hidden)
    if family.pooler:
        head = head + hidden * hidden + hidden
    if shape.relative_table:
        head = head + shape.relative_table * hidden + (2 * hidden if shape.relative_norm else 0)
    if shape.conv_kernel > 0:
        head = head + hidden * hidden * shape.conv_kernel / shape.conv_groups + 3 * hidden
    return embeddings + head


def _block_params(shape: ConfigShape, layers: _Layers) -> np.ndarray:
    """One block's parameters: linear in its heads' width and its FFN width, plus a norm (and biases) per sub-layer."""
    family, hidden, attn, kv = shape.family, layers.hidden, layers.attn_width, layers.kv_width
    attention = hidden * (attn + 2 * kv) + attn * hidden
    attention = attention + (attn + 2 * kv) * shape.qkv_bias + hidden * shape.out_bias
    attention = attention + shape.position_projections * (hidden * attn + attn)
    n_ffn_in = 2 if family.gated_mlp else 1
    ffn = (n_ffn_in + 1) * hidden * layers.inter + (n_ffn_in * layers.inter + hidden) * shape.mlp_bias
    norm = _norm_params(family.layer_norm, hidden)
    return layers.attention * (attention + norm) + layers.mlp * (ffn + norm)


def _parameter_count(shape: ConfigShape, layers: _Layers) -> np.ndarray:
    return _outer_params(shape, layers.hidden) + layers.blocks * _block_params(shape, layers)


def _by_student_class(space: SearchSpace, cost):
    """`cost(shape, layers)` of each candidate's student: the parent's class, or Bort where the parent's class cannot
    hold the student (`SearchSpace.builds_bort`: no token types, no pooler, positions from 0)."""
    values = cost(space.shape, _grid_layers(space, space.shape))
    bort = space.builds_bort()
    if not bort.any():
        return values
    bort_shape = space.shape.as_bort()
    as_bort = cost(bort_shape, _grid_layers(space, bort_shape))
    if isinstance(values, dict):
        return {k: np.where(bort, as_bort[k], v) for k, v in values.items()}
    return np.where(bort, as_bort, values)


def parameter_count(space: SearchSpace) -> np.ndarray:
    """p(ξ) for every candidate: the exact parameter count of its student's base model (any per-layer allocation of
    the candidate's heads and FFN neurons has the same count)."""
    return _by_student_class(space, _parameter_count)


def _block_flops(shape: ConfigShape, layers: _Layers, n: float) -> dict[str, np.ndarray]:
    family, hidden = shape.family, layers.hidden
    norm = _LAYER_NORM_FLOPS if family.layer_norm == "layer" else _RMS_NORM_FLOPS
    n_ffn_in = 2 if family.gated_mlp else 1
    attention_matmul = 2 * n * hidden * (layers.attn_width + 2 * layers.kv_width) + 2 * n * layers.attn_width * hidden
    softmax = (_SOFTMAX_FLOPS + 1) * layers.heads * n * n
    # per sub-layer: its norm and its residual addition; the FFN adds its activation (and the gate's product)
    elementwise_attention = norm * n * hidden + n * hidden
    elementwise_mlp = (_ACTIVATION_FLOPS + n_ffn_in - 1) * n * layers.inter + norm * n * hidden + n * hidden
    return {
        "matmul": layers.attention * attention_matmul + layers.mlp * 2 * n * hidden * layers.inter * (n_ffn_in + 1),
        "attention": layers.attention * (4 * n * n * layers.attn_width + softmax),
        "softmax": layers.attention * softmax,
        "elementwise": layers.attention * elementwise_attention + layers.mlp * elementwise_mlp,
    }


def _outer_flops(shape: ConfigShape, hidden: np.ndarray, n: float) -> dict[str, np.ndarray]:
    family = shape.family
    norm = _LAYER_NORM_FLOPS if family.layer_norm == "layer" else _RMS_NORM_FLOPS
    emb = shape.embedding_width(hidden) * np.ones_like(hidden)
    projects = (emb != hidden) | (family.factorized_embeddings == "always")
    matmul = np.where(projects & (family.factorized_embeddings != "none"), 2 * n * emb * hidden, 0)
    if family.pooler:
        matmul = matmul + 2 * hidden * hidden
    tables = 1 + shape.learned_positions + (shape.type_vocab_size > 0)
    elementwise = (tables - 1) * n * emb
    if family.embedding_norm == "layer":
        elementwise = elementwise + _LAYER_NORM_FLOPS * n * emb
    if family.final_norm != "none":
        elementwise = elementwise + norm * n * hidden
    return {"matmul": matmul, "elementwise": elementwise}


def _flops_breakdown(shape: ConfigShape, layers: _Layers, n: float) -> dict[str, np.ndarray]:
    block, outer = _block_flops(shape, layers, n), _outer_flops(shape, layers.hidden, n)
    runs = layers.applications
    return {
        "matmul": runs * block["matmul"] + outer["matmul"],
        "attention": runs * block["attention"],
        "softmax": runs * block["softmax"],
        "elementwise": runs * block["elementwise"] + outer["elementwise"],
        "layers": runs * np.ones_like(layers.hidden),
    }


def flops_breakdown(space: SearchSpace, seq_len: int = 128) -> dict[str, np.ndarray]:
    """i(ξ) split into matmul, attention (n² terms), element-wise and per-layer-count parts (features for latency).

    "softmax" is the per-head share of "attention" (heads x n², the only term that grows with the head count at a
    fixed width), returned apart so a latency fit can price it at its own, much higher, cost per FLOP on a CPU.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len}.")
    return _by_student_class(space, lambda shape, layers: _flops_breakdown(shape, layers, float(seq_len)))


def inference_flops(space: SearchSpace, seq_len: int = 128) -> np.ndarray:
    """i(ξ) for every candidate: FLOPs of one forward pass over `seq_len` tokens (batch 1)."""
    parts = flops_breakdown(space, seq_len)
    return parts["matmul"] + parts["attention"] + parts["elementwise"]


def config_costs(config, seq_len: int = 128) -> tuple[float, float]:
    """(p, i) of the base model `config` builds, for any family of `FAMILIES`; a heterogeneous Bort (per-layer heads,
    head widths and FFN widths, skipped sub-layers) is summed layer by layer."""
    from .space import Architecture, SearchSpace, config_shape

    if not getattr(config, "is_heterogeneous", False):
        space = SearchSpace.from_config(config, allocation="uniform")
        single = space.subset(np.flatnonzero([arch == space.parent_architecture for arch in space])[:1])
        return float(parameter_count(single)[0]), float(inference_flops(single, seq_len)[0])
    layers = list(config.per_layer_config)
    skips = [set(getattr(layer, "skip", None) or ()) for layer in layers]
    heads = np.array([0 if "attention" in s else layer.num_attention_heads for layer, s in zip(layers, skips)], float)
    widths = np.array([layer.head_dim for layer in layers], dtype=np.float64)
    hidden = np.full(len(layers), float(config.hidden_size))
    per_layer = _Layers(
        hidden=hidden,
        heads=heads,
        attn_width=heads * widths,
        kv_width=heads * widths,
        inter=np.array([layer.intermediate_size for layer in layers], dtype=np.float64),
        attention=np.array(["attention" not in s for s in skips], dtype=np.float64),
        mlp=np.array(["mlp" not in s for s in skips], dtype=np.float64),
    )
    first = layers[0]
    shape = config_shape(
        config, Architecture(len(layers), first.num_attention_heads, config.hidden_size, first.intermediate_size)
    )
    n, one = float(seq_len), hidden[:1]
    params = _outer_params(shape, one)[0] + _block_params(shape, per_layer).sum()
    blocks = _block_flops(shape, per_layer, n)
    outer = _outer_flops(shape, one, n)
    flops = outer["matmul"][0] + outer["elementwise"][0]
    flops += blocks["matmul"].sum() + blocks["attention"].sum() + blocks["elementwise"].sum()
    return float(params), float(flops)


def forward_mflops(config, shapes: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Forward MFLOPs (`config_costs`) of the base model of `config` per (batch, tokens) shape, named "BxN" as the
    latency protocol names its shapes: the one FLOP count compress, the choice and the leaderboard share."""
    return {shape_name(batch, seq_len): batch * config_costs(config, seq_len)[1] / 1e6 for batch, seq_len in shapes}


def flops_speedup(mflops: dict[str, float], reference_mflops: dict[str, float]) -> dict:
    """How many times fewer forward FLOPs a model needs than the reference, both counted by `forward_mflops` on the
    same shapes, the budget being the smallest ratio: the deterministic, device-independent stand-in for
    `measure_speedup` (`CompressConfig.speed="flops"`), laid out as its `Speedup.to_dict()`."""
    if mflops.keys() != reference_mflops.keys():
        raise ValueError(f"Counted on different shapes: {list(mflops)} against {list(reference_mflops)}.")
    ratios = {name: reference_mflops[name] / mflops[name] for name in mflops}
    return {
        "speedup": min(ratios.values()),
        "ratios": ratios,
        "mflops": dict(mflops),
        "reference_mflops": dict(reference_mflops),
        "protocol": {"measure": "flops", "shapes": list(mflops)},
    }


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
    reference_ms: float | None = None  # fitted against a reference model: its median latency over the fit

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
        threads: int | None = None,
        seed: int = 0,
        reference: torch.nn.Module | None = None,
    ) -> LatencyModel:
        """Time `n_samples` random candidates of `space` (base models, random weights) and fit the model.

        Every timing is `hf_bort.ose.latency.measure_latency_ms` (warm-up, `repeats` passes, median) with `threads`
        torch threads (default: the current number), the protocol every latency in hf_bort uses.

        With a `reference` model (the parent a speed-up is measured against), each candidate is instead timed
        alternately with it (`measure_speedup`) and its latency taken as the reference's median over the whole fit
        divided by the candidate's ratio: a machine whose speed drifts while the fit runs (a shared 2-core machine
        moved the parent's latency from 37 to 42 ms between fits a minute apart) then skews no candidate's timing
        against another's. `reference_ms` on the returned model is that median."""
        from transformers import AutoModel

        from .latency import measure_latency_ms, measure_speedup

        if n_samples < 4:
            raise ValueError(f"n_samples must be at least 4 (a fit and a held-out check), got {n_samples}.")
        rng = np.random.default_rng(seed)
        sample = space.subset(rng.choice(len(space), size=min(n_samples, len(space)), replace=False))
        threads = threads or torch.get_num_threads()
        models = (AutoModel.from_config(space.to_config(arch)) for arch in sample)
        if reference is None:
            times = [
                measure_latency_ms(
                    model, batch_size=batch_size, seq_len=seq_len, threads=threads, repeats=repeats, warmup=1
                )
                for model in models
            ]
            return cls.from_timings(
                sample, times, seq_len=seq_len, batch_size=batch_size, holdout_fraction=holdout_fraction
            )
        shape = [(batch_size, seq_len)]
        speeds = [measure_speedup(model, reference, shape, threads, repeats, warmup=1) for model in models]
        reference_ms = float(np.median([next(iter(s.reference_ms.values())) for s in speeds]))
        times = [reference_ms / s.value for s in speeds]
        fitted = cls.from_timings(
            sample, times, seq_len=seq_len, batch_size=batch_size, holdout_fraction=holdout_fraction
        )
        fitted.reference_ms = reference_ms
        return fitted

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
    "config_costs",
    "costs_of",
    "flops_breakdown",
    "flops_speedup",
    "forward_mflops",
    "inference_flops",
    "parameter_count",
    "pareto_front",
]
