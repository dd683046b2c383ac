"""The OSE search space: candidate architectures <depth D, heads A, hidden H, intermediate I> of a parent config,
with the head width d as a fifth dimension where the family lets it differ from H / A.

Every supported model family is one row of `families.FAMILIES`: the structural facts the closed-form costs in
`costs.py` need (pooler, norms, biases, gated FFN, factorised embeddings, ...), how wide a candidate's heads may be,
whether its layers may differ, and the weight layout extraction needs. The dimensions are read through the standard
names that `attribute_map` resolves (e.g. GPT-2's `n_embd` behind `hidden_size`) or a known alias. A family is data,
not an if-chain, so adding one is adding a row.

Heads and FFN width per layer. A point holds the per-layer *mean* heads A and FFN width I; with `allocation=
"importance"` (BERT-layout families) extraction hands the D x A heads and D x I neurons to the layers by importance
(`hf_bort.ose.extract`), so the student's layers differ. Parameters and FLOPs are sums of per-layer terms linear in a
layer's heads and FFN width, so every allocation of the same totals costs exactly what the point costs: the FPTAS
searches the totals, and the allocation is free in cost.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

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
    """One point of the search space: <depth, heads, hidden, intermediate> (D, A, H, I in the Bort paper), and the
    width of one head where the family lets it differ from hidden / heads.

    With a per-layer allocation, `heads` and `intermediate` are the means per layer (the totals are D x A and D x I).
    """

    depth: int
    heads: int
    hidden: int
    intermediate: int
    head_dim: int | None = None  # None: hidden // heads (the heads fill the hidden size)

    def __post_init__(self):
        if self.head_dim is not None and self.head_dim * self.heads == self.hidden:
            object.__setattr__(self, "head_dim", None)  # one name per candidate: None already means hidden / heads

    def as_dict(self) -> dict[str, int]:
        values = asdict(self)
        if self.head_dim is None:
            del values["head_dim"]  # the four-number form of tied families, as earlier results hold it
        return values

    def __str__(self) -> str:
        heads = f"{self.heads}x{self.head_dim}" if self.head_dim is not None else str(self.heads)
        return f"<D={self.depth}, A={heads}, H={self.hidden}, I={self.intermediate}>"


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
    parent_head_dim: int  # the width of one of the parent's heads
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
    position_offset: int = 0  # rows of the position table before position 0 (RoBERTa: padding_idx + 1)

    def embedding_width(self, hidden: np.ndarray | int) -> np.ndarray | int:
        return hidden if self.embedding_size is None else self.embedding_size

    def as_bort(self) -> ConfigShape:
        """The shape of the Bort model a BERT-layout parent's student becomes: no token types, no pooler, and
        positions numbered from 0 (RoBERTa's first padding_idx + 1 rows dropped)."""
        return replace(
            self,
            model_type="bort",
            family=FAMILIES["bort"],
            type_vocab_size=0,
            max_positions=self.max_positions - self.position_offset,
            position_offset=0,
        )


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
    # Costs only: heads tied to hidden / heads and layers alike, the shape every config can describe.
    return FAMILIES.get(model_type) or replace(FAMILIES["bert"], head_width="tied", per_layer=False, layout=None)


def read_dimension(config: PreTrainedConfig, dim: str, parent_dims: dict[str, int] | None = None) -> int:
    """Read D, A, H or I from a config via its standard name (through `attribute_map`) or a known alias."""
    if parent_dims and dim in parent_dims:
        return int(parent_dims[dim])
    if getattr(config, "is_heterogeneous", False):
        raise ValueError(
            f"The parent config sets per_layer_config (its layers differ), so it has no single {dim}; OSE searches "
            "below a uniform parent. Search the uniform model this one was extracted from instead."
        )
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


def parent_architecture(config: PreTrainedConfig, parent_dims: dict[str, int] | None = None) -> Architecture:
    """The parent's own point: its D, A, H, I, and its head width where the family lets heads differ from H / A."""
    depth, heads, hidden, intermediate = (read_dimension(config, dim, parent_dims) for dim in _DIMS)
    family = family_of(config)
    head_dim = getattr(config, "head_dim", None) if family.has_head_dim_field and family.head_width != "tied" else None
    return Architecture(depth, heads, hidden, intermediate, head_dim)


def config_shape(config: PreTrainedConfig, parent: Architecture) -> ConfigShape:
    family = family_of(config)
    vocab = getattr(config, "vocab_size", None)
    if vocab is None:
        raise ValueError(f"{type(config).__name__} has no vocab_size; the embedding cost cannot be computed.")
    kv_heads = getattr(config, "num_key_value_heads", None) if family.has_kv_heads else None
    kv_group = parent.heads // kv_heads if kv_heads else 1
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
    if family.position_offset:
        shape.update(position_offset=int(getattr(config, "pad_token_id", None) or 0) + 1)
    return ConfigShape(
        model_type=getattr(config, "model_type", ""),
        family=family,
        vocab_size=int(vocab),
        max_positions=int(getattr(config, "max_position_embeddings", 0) or 0),
        type_vocab_size=int(getattr(config, "type_vocab_size", 0) or 0) if family.token_types else 0,
        embedding_size=embedding_size,
        kv_group=kv_group,
        parent_head_dim=parent.head_dim or parent.hidden // parent.heads,
        qkv_bias=_flag(family.qkv_bias, config),
        out_bias=_flag(family.out_bias, config),
        mlp_bias=_flag(family.mlp_bias, config),
        learned_positions=_flag(family.learned_positions, config),
        **shape,
    )


def _default_grid(parent_value: int, step: int) -> list[int]:
    """Multiples of `step` up to the parent's value, plus the parent's value itself."""
    return sorted({*range(step, parent_value + 1, step), parent_value})


ALLOCATIONS = ("uniform", "importance")


def builds_bort(
    shape: ConfigShape,
    parent: Architecture,
    allocation: str,
    heads: np.ndarray | int,
    hidden: np.ndarray | int,
    intermediate: np.ndarray | int,
    head_dim: np.ndarray | int,
) -> np.ndarray | bool:
    """Whether a candidate of a BERT-layout parent is built as a Bort model rather than in the parent's own class.

    The parent's class holds a student only when its heads fill the hidden size (H = A x d) and its layers are alike
    (a uniform allocation, or every head and neuron kept). Bort holds every structured subnetwork.
    """
    if shape.family.head_width != "free" or shape.model_type == "bort":
        return np.zeros(np.shape(heads), dtype=bool)
    alike = (allocation == "uniform") | (
        (np.asarray(heads) == parent.heads) & (np.asarray(intermediate) == parent.intermediate)
    )
    return np.logical_not((np.asarray(hidden) == np.asarray(heads) * head_dim) & alike)


class SearchSpace:
    """A sized, iterable set of `Architecture`s derived from a parent config, with vectorised access for costs.

    Build it with `SearchSpace.from_config(config, ...)`. Grids default to 1..D for depth, every head count the
    family allows, the parent's head width, and multiples of `step` up to the parent's H and I; explicit lists
    replace them and cost constraints (`max_params`, `max_flops`, `max_latency_ms`) filter the product.
    `allocation` says how extraction spreads a point's heads and FFN neurons over its layers.
    """

    def __init__(
        self,
        config: PreTrainedConfig,
        parent: Architecture,
        shape: ConfigShape,
        arrays: dict[str, np.ndarray],
        allocation: str = "uniform",
    ):
        self.config = config
        self.parent_architecture = parent
        self.shape = shape
        self.allocation = allocation
        self._arrays = arrays

    @classmethod
    def from_config(
        cls,
        config: PreTrainedConfig,
        *,
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        head_dims: Sequence[int] | None = None,
        hidden_sizes: Sequence[int] | None = None,
        intermediate_sizes: Sequence[int] | None = None,
        step: int = 64,
        allocation: str | None = None,
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
            head_dims: widths of one head, for families whose heads need not fill the hidden size (BERT layout: at
                most the parent's; default the parent's width). Families that tie it to H / A, or fix it (rotary),
                take none.
            step: spacing of the default hidden and intermediate grids.
            allocation: "importance" (heads and FFN neurons spread over layers by importance; BERT-layout families,
                the default there) or "uniform" (every layer alike; the only choice for other families).
            max_params / max_flops: keep candidates whose p(ξ) / i(ξ) at `seq_len` are at most this.
            max_latency_ms: keep candidates whose latency predicted by `latency_model` is at most this.
            parent_dims: the parent's D/A/H/I where the config does not hold them, e.g. {"intermediate": 3072}.
        """
        if step < 1:
            raise ValueError(f"step must be a positive integer, got {step}.")
        parent = parent_architecture(config, parent_dims)
        shape = config_shape(config, parent)
        family = shape.family
        allocation = allocation or ("importance" if family.per_layer else "uniform")
        if allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}.")
        if allocation == "importance" and not family.per_layer:
            raise ValueError(
                f"allocation='importance' gives layers different head counts and FFN widths, which a "
                f"{shape.model_type!r} model cannot load (only BERT-layout parents, whose students are Bort models, "
                "can); pass allocation='uniform'."
            )
        grids = {
            "depth": sorted(set(depths)) if depths is not None else list(range(1, parent.depth + 1)),
            "heads": sorted(set(num_heads)) if num_heads is not None else list(range(1, parent.heads + 1)),
            "hidden": sorted(set(hidden_sizes)) if hidden_sizes is not None else _default_grid(parent.hidden, step),
            "intermediate": sorted(set(intermediate_sizes))
            if intermediate_sizes is not None
            else _default_grid(parent.intermediate, step),
            "head_dim": _head_dim_grid(shape, head_dims),
        }
        for dim, values in grids.items():
            if not values or min(values) < 1:
                raise ValueError(f"The {dim} grid must hold positive integers, got {values}.")
        if num_heads is not None and shape.kv_group > 1 and any(a % shape.kv_group for a in grids["heads"]):
            bad = [a for a in grids["heads"] if a % shape.kv_group]
            raise ValueError(
                f"num_heads {bad} are not multiples of {shape.kv_group}, the query heads per key-value head of this "
                "grouped-query parent (whole query groups are kept with their key-value head); choose multiples."
            )
        if family.head_width == "tied" and num_heads is not None:
            if all(h % a for a in grids["heads"] for h in grids["hidden"]):
                raise ValueError(
                    f"No head count in {grids['heads']} divides any hidden size in {grids['hidden']}: "
                    "choose heads that divide the hidden size (head_dim = hidden / heads)."
                )
        mesh = np.array(list(itertools.product(*grids.values())), dtype=np.int64).reshape(-1, len(grids))
        arrays = dict(zip(grids, mesh.T))
        valid = arrays["heads"] % shape.kv_group == 0
        if family.head_width == "tied":
            valid &= arrays["hidden"] % arrays["heads"] == 0
            arrays["head_dim"] = np.where(valid, arrays["hidden"] // arrays["heads"], 0)
        arrays = {k: v[valid] for k, v in arrays.items()}
        space = cls(config, parent, shape, arrays, allocation)
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
            self.config,
            self.parent_architecture,
            self.shape,
            {k: v[mask] for k, v in self._arrays.items()},
            self.allocation,
        )

    @classmethod
    def from_architectures(cls, space: SearchSpace, architectures: Sequence[Architecture]) -> SearchSpace:
        """A space over the same parent holding exactly `architectures` (e.g. the released Bort's point)."""
        rows = [[getattr(a, d) for d in _DIMS] + [head_width(a, space.shape)] for a in architectures]
        mesh = np.array(rows, dtype=np.int64).reshape(-1, len(_DIMS) + 1)
        arrays = dict(zip((*_DIMS, "head_dim"), mesh.T))
        return cls(space.config, space.parent_architecture, space.shape, arrays, space.allocation)

    def arrays(self) -> dict[str, np.ndarray]:
        """The candidates as int64 arrays keyed depth / heads / hidden / intermediate / head_dim (the width in use)."""
        return self._arrays

    def builds_bort(self) -> np.ndarray:
        """Per candidate: True where the student is a Bort model rather than the parent's own class."""
        a = self._arrays
        return np.asarray(
            builds_bort(
                self.shape,
                self.parent_architecture,
                self.allocation,
                a["heads"],
                a["hidden"],
                a["intermediate"],
                a["head_dim"],
            ),
            dtype=bool,
        )

    def __len__(self) -> int:
        return len(self._arrays["depth"])

    def _architecture(self, row: Sequence[int]) -> Architecture:
        return Architecture(*(int(v) for v in row))

    def canonical(self, arch: Architecture) -> Architecture:
        """`arch` with the head width this family gives it written out (None where the heads fill the hidden size):
        the name the space's own candidates carry."""
        return replace(arch, head_dim=head_width(arch, self.shape))

    def __getitem__(self, index: int) -> Architecture:
        return self._architecture([self._arrays[d][index] for d in (*_DIMS, "head_dim")])

    def __iter__(self) -> Iterator[Architecture]:
        for row in zip(*(self._arrays[d].tolist() for d in (*_DIMS, "head_dim"))):
            yield self._architecture(row)

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, Architecture):
            return False
        match = self._arrays["head_dim"] == head_width(arch, self.shape)
        for d in _DIMS:
            match &= self._arrays[d] == getattr(arch, d)
        return bool(match.any())

    def __repr__(self) -> str:
        return (
            f"SearchSpace({len(self)} candidates of {self.shape.model_type!r}, parent {self.parent_architecture}, "
            f"{self.allocation} allocation)"
        )

    def to_config(self, arch: Architecture, allocation: dict | None = None) -> PreTrainedConfig:
        """The config of the candidate's student: with `allocation` ({"heads": [...], "intermediate": [...]}, as a
        record holds it) its layers' own sizes, else every layer alike. Instantiated, either has exactly the
        candidate's parameters and FLOPs (a per-layer allocation of the same totals costs the same); its class is the
        student's: the parent's own, or Bort (see `builds_bort`)."""
        alike = allocation is None or all(len(set(v)) == 1 for v in allocation.values())
        if not alike:
            return candidate_config(
                self.config,
                arch,
                self.shape,
                self.parent_architecture,
                layer_heads=allocation["heads"],
                layer_intermediate=allocation["intermediate"],
            )
        as_bort = bool(
            builds_bort(
                self.shape,
                self.parent_architecture,
                self.allocation,
                arch.heads,
                arch.hidden,
                arch.intermediate,
                head_width(arch, self.shape),
            )
        )
        return candidate_config(self.config, arch, self.shape, self.parent_architecture, as_bort=as_bort)


def head_width(arch: Architecture, shape: ConfigShape) -> int:
    """The width of one of a candidate's heads: its own `head_dim`, else the parent's where the family fixes it
    (rotary), else hidden / heads (the four-number form). Where heads do not divide hidden, a family with free head
    widths keeps the parent's; a tied family cannot build it."""
    if arch.head_dim is not None:
        return arch.head_dim
    if shape.family.head_width == "fixed":
        return shape.parent_head_dim
    if arch.hidden % arch.heads == 0:
        return arch.hidden // arch.heads
    if shape.family.head_width != "tied":
        return shape.parent_head_dim
    raise ValueError(
        f"heads={arch.heads} does not divide hidden={arch.hidden}, and a {shape.model_type!r} model needs "
        "head_dim = hidden / heads; choose heads that divide hidden."
    )


def _head_dim_grid(shape: ConfigShape, head_dims: Sequence[int] | None) -> list[int]:
    """The head widths a family can take: the parent's by default; narrower ones where heads are free."""
    width, kind = shape.parent_head_dim, shape.family.head_width
    if head_dims is None:
        return [width]
    head_dims = sorted(set(head_dims))
    if kind == "tied":
        raise ValueError(
            f"A {shape.model_type!r} model's heads are hidden / heads wide, so head_dims cannot be chosen; leave "
            "head_dims unset (the hidden sizes and head counts set the width)."
        )
    if kind == "fixed" and head_dims != [width]:
        raise ValueError(
            f"A {shape.model_type!r} model keeps its heads {width} wide (rotary position tables are built for that "
            f"width), so head_dims {head_dims} cannot be searched; leave head_dims unset."
        )
    if max(head_dims) > width:
        raise ValueError(
            f"head_dims {head_dims} go beyond the parent's head width {width}: a head can keep at most the "
            "dimensions it has; choose widths up to the parent's."
        )
    return head_dims


def _field_name(config: PreTrainedConfig, dim: str) -> str:
    """The attribute that really stores a dimension (e.g. `n_embd` for GPT-2's hidden size)."""
    standard = _STANDARD_NAMES[dim]
    if standard in getattr(config, "attribute_map", {}):
        return config.attribute_map[standard]
    if standard in config.to_dict():
        return standard
    return next((alias for alias in _ALIASES[dim] if alias in config.to_dict()), standard)


def candidate_config(
    config: PreTrainedConfig,
    arch: Architecture,
    shape: ConfigShape | None = None,
    parent: Architecture | None = None,
    *,
    layer_heads: Sequence[int] | None = None,
    layer_intermediate: Sequence[int] | None = None,
    as_bort: bool = False,
) -> PreTrainedConfig:
    """The student's config: a copy of `config` resized to `arch` (family extras such as head_dim, key-value heads
    and ALBERT groups follow), or, with `as_bort`, the Bort config of the same student (BERT-layout parents).

    `layer_heads` / `layer_intermediate` give each layer's heads and FFN width (0 heads or 0 neurons: the sub-layer
    is skipped); they make a heterogeneous Bort, recorded in its `per_layer_config`.
    """
    parent = parent or parent_architecture(config)
    shape = shape or config_shape(config, parent)
    per_layer = layer_heads is not None or layer_intermediate is not None
    if per_layer and not shape.family.per_layer:
        raise ValueError(
            f"Per-layer heads and FFN widths need a Bort student, which a {shape.model_type!r} parent cannot become "
            "(BERT-layout parents only); extract every layer alike."
        )
    if as_bort or per_layer:
        return _bort_config(config, arch, shape, layer_heads, layer_intermediate)
    updates = {_field_name(config, dim): getattr(arch, dim) for dim in _DIMS}
    if shape.family.has_head_dim_field:
        updates["head_dim"] = head_width(arch, shape)
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


def _bort_config(config, arch: Architecture, shape: ConfigShape, layer_heads, layer_intermediate):
    """The Bort config of a BERT-layout parent's student, per-layer sizes (and skipped sub-layers) included."""
    from ..configuration_bort import BortConfig
    from ..convert import bort_config_from_bert

    if not shape.family.per_layer:
        raise ValueError(
            f"A {shape.model_type!r} parent's students cannot be Bort models (BERT-layout parents only: bert, "
            "roberta, xlm-roberta, camembert, bort)."
        )
    base = config if shape.model_type == "bort" else bort_config_from_bert(config)
    layer_heads = list(layer_heads) if layer_heads is not None else [arch.heads] * arch.depth
    layer_intermediate = (
        list(layer_intermediate) if layer_intermediate is not None else [arch.intermediate] * arch.depth
    )
    for name, values in (("layer_heads", layer_heads), ("layer_intermediate", layer_intermediate)):
        if len(values) != arch.depth or min(values) < 0:
            raise ValueError(
                f"{name} must give one count >= 0 for each of the {arch.depth} layers, got {values} (0 skips the "
                "sub-layer)."
            )
    heads = _most_common([a for a in layer_heads if a] or [arch.heads])
    intermediate = _most_common([i for i in layer_intermediate if i] or [arch.intermediate])
    per_layer = {}
    for index, (a, i) in enumerate(zip(layer_heads, layer_intermediate)):
        overrides = {"skip": [name for name, n in (("attention", a), ("mlp", i)) if n == 0]}
        overrides.update(
            {
                k: v
                for k, v, g in (("num_attention_heads", a, heads), ("intermediate_size", i, intermediate))
                if v and v != g
            }
        )
        if not overrides["skip"]:
            del overrides["skip"]
        if overrides:
            per_layer[index] = overrides
    values = {
        **base.to_dict(),
        "hidden_size": arch.hidden,
        "num_hidden_layers": arch.depth,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "head_dim": head_width(arch, shape),
        "max_position_embeddings": shape.max_positions - shape.position_offset,
        "per_layer_config": per_layer or None,
        # the task the parent was fine-tuned for, so that its head carries over
        "id2label": config.id2label,
        "label2id": config.label2id,
        "problem_type": config.problem_type,
    }
    for key in ("transformers_version", "architectures", "auto_map", "model_type"):
        values.pop(key, None)
    return BortConfig.from_dict(values)


def layer_sizes(config: PreTrainedConfig) -> dict[str, list[int]]:
    """Each layer's heads and FFN width ({"heads": [...], "intermediate": [...]}; 0 where the sub-layer is skipped):
    what a per-layer allocation gave a student, for reading."""
    if getattr(config, "is_heterogeneous", False):
        layers = [(layer, set(getattr(layer, "skip", None) or ())) for layer in config.per_layer_config]
        return {
            "heads": [0 if "attention" in skip else layer.num_attention_heads for layer, skip in layers],
            "intermediate": [0 if "mlp" in skip else layer.intermediate_size for layer, skip in layers],
        }
    depth, heads, intermediate = (read_dimension(config, dim) for dim in ("depth", "heads", "intermediate"))
    return {"heads": [heads] * depth, "intermediate": [intermediate] * depth}


def _most_common(values: list[int]) -> int:
    """The value most layers share (ties: the larger), so that `per_layer_config` lists the fewest overrides."""
    return max(set(values), key=lambda v: (values.count(v), v))


__all__ = [
    "ALLOCATIONS",
    "Architecture",
    "FAMILIES",
    "FamilySpec",
    "SearchSpace",
    "builds_bort",
    "candidate_config",
    "head_width",
    "layer_sizes",
    "parent_architecture",
    "read_dimension",
]
