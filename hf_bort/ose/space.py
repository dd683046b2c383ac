"""The OSE search space: candidate architectures <depth D, heads A, hidden H, intermediate I> of a parent config.

Every supported model family is one row of `families.FAMILIES`: the structural facts the closed-form costs in
`costs.py` need (pooler, norms, biases, gated FFN, factorised embeddings, ...) and the weight layout extraction
needs. The four dimensions are read through the standard names that `attribute_map` resolves (e.g. GPT-2's
`n_embd` behind `hidden_size`) or a known alias. A family is data, not an if-chain, so adding one is adding a row.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from transformers import PreTrainedConfig
from transformers.utils import logging

from .costs import inference_flops, parameter_count
from .families import FAMILIES, FamilySpec


logger = logging.get_logger(__name__)

_DIMS = ("depth", "heads", "hidden", "intermediate")
_STANDARD_NAMES = {
    "depth": "num_hidden_layers",
    "heads": "num_attention_heads",
    "hidden": "hidden_size",
    "intermediate": "intermediate_size",
}
# Names some configs use without mapping them in `attribute_map`, tried after the standard name.
_ALIASES = {
    "depth": ("n_layer", "n_layers", "num_layers", "encoder_layers"),
    "heads": ("n_head", "n_heads", "num_heads", "encoder_attention_heads"),
    "hidden": ("n_embd", "dim", "d_model"),
    "intermediate": ("n_inner", "hidden_dim", "ffn_dim", "d_ff", "encoder_ffn_dim"),
}


@dataclass(frozen=True, order=True)
class Architecture:
    """One point of the search space: <depth, heads, hidden, intermediate> (D, A, H, I in the Bort paper)."""

    depth: int
    heads: int
    hidden: int
    intermediate: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __str__(self) -> str:
        return f"<D={self.depth}, A={self.heads}, H={self.hidden}, I={self.intermediate}>"


@dataclass(frozen=True)
class ConfigShape:
    """The parent config's numbers that stay fixed across candidates, as the cost formulas need them."""

    model_type: str
    family: FamilySpec
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    embedding_size: int | None  # factorised embedding width; None when it follows H
    kv_group: int  # heads per key-value head (1 without grouped-query attention)
    fixed_head_dim: int | None  # set when the parent's head_dim is not H / A (pruned heads); then kept for all
    qkv_bias: bool
    out_bias: bool
    mlp_bias: bool
    learned_positions: bool
    layer_groups: int = 1  # ALBERT num_hidden_groups
    inner_group_num: int = 1  # ALBERT inner_group_num
    relative_table: int = 0  # DeBERTa rel_embeddings rows (0: none)
    relative_norm: bool = False
    position_projections: int = 0  # DeBERTa pos_key_proj / pos_query_proj per layer
    conv_kernel: int = 0
    conv_groups: int = 1

    def embedding_width(self, hidden: np.ndarray | int) -> np.ndarray | int:
        return hidden if self.embedding_size is None else self.embedding_size


def _flag(value: bool | str, config: PreTrainedConfig) -> bool:
    return bool(getattr(config, value, False)) if isinstance(value, str) else value


def family_of(config: PreTrainedConfig) -> FamilySpec:
    """The family row for a config; unknown model types fall back to BERT's layout with a warning."""
    model_type = getattr(config, "model_type", "")
    if model_type not in FAMILIES:
        logger.warning(
            f"No cost table for model_type {model_type!r}; using BERT's layout, so parameter counts are approximate. "
            f"Known families: {sorted(FAMILIES)}."
        )
    return FAMILIES.get(model_type, FAMILIES["bert"])


def read_dimension(config: PreTrainedConfig, dim: str, parent_dims: dict[str, int] | None = None) -> int:
    """Read D, A, H or I from a config via its standard name (through `attribute_map`) or a known alias."""
    if parent_dims and dim in parent_dims:
        return int(parent_dims[dim])
    names = (_STANDARD_NAMES[dim], *_ALIASES[dim])
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    family = family_of(config)
    if dim == "intermediate" and family.intermediate_multiple is not None:
        return family.intermediate_multiple * read_dimension(config, "hidden", parent_dims)
    raise ValueError(
        f"Cannot read the {dim} of {type(config).__name__} (model_type {getattr(config, 'model_type', '?')!r}): "
        f"none of {', '.join(names)} is set. Pass it explicitly, e.g. "
        f"SearchSpace.from_config(config, parent_dims={{'{dim}': <int>}})."
    )


def _config_shape(config: PreTrainedConfig, parent: Architecture) -> ConfigShape:
    family = family_of(config)
    vocab = getattr(config, "vocab_size", None)
    if vocab is None:
        raise ValueError(f"{type(config).__name__} has no vocab_size; the embedding cost cannot be computed.")
    kv_heads = getattr(config, "num_key_value_heads", None) if family.has_kv_heads else None
    kv_group = parent.heads // kv_heads if kv_heads else 1
    head_dim = getattr(config, "head_dim", None) if family.has_head_dim_field else None
    if family.positions == "rotary":  # rotary tables are built for head_dim: every candidate keeps the parent's
        head_dim = head_dim or parent.hidden // parent.heads
        fixed_head_dim = head_dim
    else:
        fixed_head_dim = head_dim if head_dim and head_dim * parent.heads != parent.hidden else None
    embedding_size = getattr(config, "embedding_size", None) if family.factorized_embeddings != "none" else None
    if embedding_size == parent.hidden:
        embedding_size = None  # the embedding width follows H in candidates too
    shape = {}
    if family.positions == "relative" and getattr(config, "relative_attention", False):
        buckets = getattr(config, "position_buckets", -1)
        max_rel = getattr(config, "max_relative_positions", -1)
        max_rel = config.max_position_embeddings if max_rel < 1 else max_rel
        pos_att = getattr(config, "pos_att_type", None) or []
        shape.update(
            relative_table=2 * (buckets if buckets > 0 else max_rel),
            relative_norm="layer_norm" in str(getattr(config, "norm_rel_ebd", "none")).lower(),
            position_projections=0
            if getattr(config, "share_att_key", False)
            else sum(kind in pos_att for kind in ("c2p", "p2c")),
        )
    if family.positions == "relative":
        shape.update(conv_kernel=getattr(config, "conv_kernel_size", 0), conv_groups=getattr(config, "conv_groups", 1))
    if family.shared_layers:
        shape.update(layer_groups=config.num_hidden_groups, inner_group_num=config.inner_group_num)
    return ConfigShape(
        model_type=getattr(config, "model_type", ""),
        family=family,
        vocab_size=int(vocab),
        max_positions=int(getattr(config, "max_position_embeddings", 0) or 0),
        type_vocab_size=int(getattr(config, "type_vocab_size", 0) or 0) if family.token_types else 0,
        embedding_size=embedding_size,
        kv_group=kv_group,
        fixed_head_dim=fixed_head_dim,
        qkv_bias=_flag(family.qkv_bias, config),
        out_bias=_flag(family.out_bias, config),
        mlp_bias=_flag(family.mlp_bias, config),
        learned_positions=_flag(family.learned_positions, config),
        **shape,
    )


def _default_grid(parent_value: int, step: int) -> list[int]:
    """Multiples of `step` up to the parent's value, plus the parent's value itself."""
    return sorted({*range(step, parent_value + 1, step), parent_value})


class SearchSpace:
    """A sized, iterable set of `Architecture`s derived from a parent config, with vectorised access for costs.

    Build it with `SearchSpace.from_config(config, ...)`. Grids default to 1..D for depth, every head count
    compatible with the hidden size, and multiples of `step` up to the parent's H and I; explicit lists replace
    them and cost constraints (`max_params`, `max_flops`, `max_latency_ms`) filter the product.
    """

    def __init__(
        self, config: PreTrainedConfig, parent: Architecture, shape: ConfigShape, arrays: dict[str, np.ndarray]
    ):
        self.config = config
        self.parent_architecture = parent
        self.shape = shape
        self._arrays = arrays

    @classmethod
    def from_config(
        cls,
        config: PreTrainedConfig,
        *,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        hidden_sizes: Sequence[int] | None = None,
        intermediate_sizes: Sequence[int] | None = None,
        step: int = 64,
        max_params: float | None = None,
        max_flops: float | None = None,
        max_latency_ms: float | None = None,
        latency_model=None,
        seq_len: int = 128,
        parent_dims: dict[str, int] | None = None,
    ) -> SearchSpace:
        """The search space of `config`'s family below (and including) the parent's own architecture.

        Args:
            config: the parent's config, any supported family (see `FAMILIES`).
            depths / num_heads / hidden_sizes / intermediate_sizes: explicit grids replacing the defaults.
            step: spacing of the default hidden and intermediate grids.
            max_params / max_flops: keep candidates whose p(ξ) / i(ξ) at `seq_len` are at most this.
            max_latency_ms: keep candidates whose latency predicted by `latency_model` is at most this.
            parent_dims: the parent's D/A/H/I where the config does not hold them, e.g. {"intermediate": 3072}.
        """
        if step < 1:
            raise ValueError(f"step must be a positive integer, got {step}.")
        parent = Architecture(*(read_dimension(config, dim, parent_dims) for dim in _DIMS))
        shape = _config_shape(config, parent)
        grids = {
            "depth": sorted(set(depths)) if depths is not None else list(range(1, parent.depth + 1)),
            "heads": sorted(set(num_heads)) if num_heads is not None else list(range(1, parent.heads + 1)),
            "hidden": sorted(set(hidden_sizes)) if hidden_sizes is not None else _default_grid(parent.hidden, step),
            "intermediate": sorted(set(intermediate_sizes))
            if intermediate_sizes is not None
            else _default_grid(parent.intermediate, step),
        }
        for dim, values in grids.items():
            if not values or min(values) < 1:
                raise ValueError(f"The {dim} grid must hold positive integers, got {values}.")
        if num_heads is not None and shape.fixed_head_dim is None:
            bad = [(a, h) for a in grids["heads"] for h in grids["hidden"] if h % a]
            if len(bad) == len(grids["heads"]) * len(grids["hidden"]):
                raise ValueError(
                    f"No head count in {grids['heads']} divides any hidden size in {grids['hidden']}: "
                    "choose heads that divide the hidden size (head_dim = hidden / heads)."
                )
        mesh = np.array(list(itertools.product(*grids.values())), dtype=np.int64).reshape(-1, 4)
        arrays = dict(zip(_DIMS, mesh.T))
        valid = arrays["heads"] % shape.kv_group == 0
        if shape.fixed_head_dim is None:
            valid &= arrays["hidden"] % arrays["heads"] == 0
        arrays = {k: v[valid] for k, v in arrays.items()}
        space = cls(config, parent, shape, arrays)
        keep = np.ones(len(space), dtype=bool)
        if max_params is not None:
            keep &= parameter_count(space) <= max_params
        if max_flops is not None:
            keep &= inference_flops(space, seq_len) <= max_flops
        if max_latency_ms is not None:
            if latency_model is None:
                raise ValueError("max_latency_ms needs latency_model= (fit one with costs.LatencyModel.fit(space)).")
            keep &= latency_model.predict(space) <= max_latency_ms
        space = space.subset(keep)
        if len(space) == 0:
            raise ValueError(
                "The search space is empty after the constraints "
                f"(max_params={max_params}, max_flops={max_flops}, max_latency_ms={max_latency_ms}; grids {grids}). "
                "Loosen a constraint or widen the grids."
            )
        return space

    def subset(self, mask: np.ndarray) -> SearchSpace:
        """The candidates where `mask` (boolean, or integer indices) selects them, in the given order."""
        return SearchSpace(
            self.config, self.parent_architecture, self.shape, {k: v[mask] for k, v in self._arrays.items()}
        )

    @classmethod
    def from_architectures(cls, space: SearchSpace, architectures: Sequence[Architecture]) -> SearchSpace:
        """A space over the same parent holding exactly `architectures` (e.g. the released Bort's point)."""
        mesh = np.array([[getattr(a, d) for d in _DIMS] for a in architectures], dtype=np.int64).reshape(-1, 4)
        return cls(space.config, space.parent_architecture, space.shape, dict(zip(_DIMS, mesh.T)))

    def arrays(self) -> dict[str, np.ndarray]:
        """The candidates as four int64 arrays keyed depth / heads / hidden / intermediate."""
        return self._arrays

    def __len__(self) -> int:
        return len(self._arrays["depth"])

    def __getitem__(self, index: int) -> Architecture:
        return Architecture(*(int(self._arrays[d][index]) for d in _DIMS))

    def __iter__(self) -> Iterator[Architecture]:
        for row in zip(*(self._arrays[d].tolist() for d in _DIMS)):
            yield Architecture(*row)

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, Architecture):
            return False
        match = np.ones(len(self), dtype=bool)
        for d in _DIMS:
            match &= self._arrays[d] == getattr(arch, d)
        return bool(match.any())

    def __repr__(self) -> str:
        return f"SearchSpace({len(self)} candidates of {self.shape.model_type!r}, parent {self.parent_architecture})"

    def head_dim(self, arch: Architecture) -> int:
        return self.shape.fixed_head_dim or arch.hidden // arch.heads

    def to_config(self, arch: Architecture) -> PreTrainedConfig:
        """The parent's config with the candidate's dimensions: instantiating it gives the candidate model."""
        return candidate_config(self.config, arch, self.shape, self.parent_architecture)


def _field_name(config: PreTrainedConfig, dim: str) -> str:
    """The attribute that really stores a dimension (e.g. `n_embd` for GPT-2's hidden size)."""
    standard = _STANDARD_NAMES[dim]
    if standard in getattr(config, "attribute_map", {}):
        return config.attribute_map[standard]
    if standard in config.to_dict():
        return standard
    return next((alias for alias in _ALIASES[dim] if alias in config.to_dict()), standard)


def candidate_config(
    config: PreTrainedConfig, arch: Architecture, shape: ConfigShape | None = None, parent: Architecture | None = None
) -> PreTrainedConfig:
    """A copy of `config` resized to `arch`; family extras (head_dim, key-value heads, ALBERT groups) follow."""
    parent = parent or Architecture(*(read_dimension(config, dim) for dim in _DIMS))
    shape = shape or _config_shape(config, parent)
    updates = {_field_name(config, dim): getattr(arch, dim) for dim in _DIMS}
    if shape.family.has_head_dim_field:
        updates["head_dim"] = shape.fixed_head_dim or arch.hidden // arch.heads
    if shape.family.has_kv_heads:
        updates["num_key_value_heads"] = arch.heads // shape.kv_group
    if shape.family.shared_layers:
        updates["num_hidden_groups"] = min(shape.layer_groups, arch.depth)
    if shape.family.factorized_embeddings != "none" and shape.embedding_size is None:
        updates["embedding_size"] = arch.hidden
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == parent.depth:
        updates["layer_types"] = layer_types[: arch.depth]  # per-layer attention kinds (Qwen2), kept from the bottom
    values = {**config.to_dict(), **updates}
    values.pop("transformers_version", None)
    new = type(config).from_dict(values)
    new.architectures = copy.copy(getattr(config, "architectures", None))
    return new


__all__ = ["Architecture", "FAMILIES", "FamilySpec", "SearchSpace", "candidate_config", "read_dimension"]
