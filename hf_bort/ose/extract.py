"""Extraction of a candidate subnetwork from a parent BERT-family model, with the parent's weights.

The candidate keeps the parent's most important layers, attention heads, FFN neurons and hidden (residual)
dimensions, by a per-weight importance score: |w| by default, or the first-order Taylor estimate |Σ w·∂L/∂w| of
the loss change when the weight is removed, accumulated over a few batches (Molchanov et al., 2019). Group scores
(a head, a neuron, a hidden dimension, a layer) are sums of their weights' scores. Every kept index stays in the
parent's order, so extracting the parent's own architecture copies it exactly.

Attention heads. A BERT config forces head_dim = hidden / heads, so a candidate's heads need not be the parent's
width d. Per layer the top-`heads` heads are kept; then each kept head
* is trimmed to its best d' < d dimensions (query/key dims by their joint score, value dims by theirs), the query
  rescaled by sqrt(d'/d) so the kept dimensions' attention logits are unchanged; or
* is widened to d' > d with new dimensions whose query rows and output-projection columns are zero while key and
  value rows are small random values: the function is unchanged at extraction (the new dims add 0 to the logits
  and to the output), and no weight sits at a zero-gradient saddle, so training can use them.
`as_bort=True` builds the same candidate (same head width, so the same costs the search scored) as a Bort model;
only where heads do not divide hidden does it keep whole heads at the parent's width (Bort's `head_dim` allows
heads x d != hidden).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ..configuration_bort import BortConfig
from ..convert import bert_state_dict_to_bort, bort_config_from_bert
from ..modeling_bort import BortModel
from .space import Architecture, candidate_config, read_dimension


SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "bort")

# Per-layer weights (BERT naming) and what their (rows, columns) index: "hidden" the residual stream, "neuron" the
# FFN, "qk" query/key head dims, "v" value head dims. Biases and LayerNorm vectors use the first kind.
_LAYER_LAYOUT = {
    "attention.self.query": ("qk", "hidden"),
    "attention.self.key": ("qk", "hidden"),
    "attention.self.value": ("v", "hidden"),
    "attention.output.dense": ("hidden", "v"),
    "attention.output.LayerNorm": ("hidden",),
    "intermediate.dense": ("neuron", "hidden"),
    "output.dense": ("hidden", "neuron"),
    "output.LayerNorm": ("hidden",),
}
# How new (widened) head dimensions are filled, per module: one side zero keeps the function, the other random.
_NEW_DIM_FILL = {
    "attention.self.query": "zero",
    "attention.self.key": "random",
    "attention.self.value": "random",
    "attention.output.dense": "zero",
}


def _base_prefix(model: PreTrainedModel) -> str:
    return "" if model.base_model is model else f"{model.base_model_prefix}."


def _check_supported(model: PreTrainedModel) -> None:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"extract_subnetwork supports BERT-layout models ({', '.join(SUPPORTED_MODEL_TYPES)}); got model_type "
            f"{model_type!r}. Search costs work for every family, but weights can only be extracted from these."
        )


@dataclass
class ImportanceScores:
    """Per-weight importance of a BERT-layout model, keyed by base-model parameter name."""

    scores: dict[str, torch.Tensor]
    kind: str  # "magnitude" | "gradient"

    def _layer(self, layer: int, module: str, kind: str = "weight") -> torch.Tensor:
        return self.scores[f"encoder.layer.{layer}.{module}.{kind}"]

    def layer_scores(self, depth: int) -> torch.Tensor:
        return torch.stack(
            [
                sum(s.sum() for n, s in self.scores.items() if n.startswith(f"encoder.layer.{layer}."))
                for layer in range(depth)
            ]
        )

    def qk_dim_scores(self, layer: int) -> torch.Tensor:
        """One score per query/key row (attention width)."""
        return sum(
            self._layer(layer, m).sum(1) + self._layer(layer, m, "bias")
            for m in ("attention.self.query", "attention.self.key")
        )

    def v_dim_scores(self, layer: int) -> torch.Tensor:
        """One score per value row / output-projection column."""
        value = self._layer(layer, "attention.self.value")
        return (
            value.sum(1)
            + self._layer(layer, "attention.self.value", "bias")
            + self._layer(layer, "attention.output.dense").sum(0)
        )

    def head_scores(self, layer: int, head_dim: int) -> torch.Tensor:
        return (self.qk_dim_scores(layer) + self.v_dim_scores(layer)).view(-1, head_dim).sum(1)

    def neuron_scores(self, layer: int) -> torch.Tensor:
        return (
            self._layer(layer, "intermediate.dense").sum(1)
            + self._layer(layer, "intermediate.dense", "bias")
            + self._layer(layer, "output.dense").sum(0)
        )

    def hidden_scores(self, hidden: int) -> torch.Tensor:
        """One score per residual dimension: each hidden-indexed tensor's marginal, normalised to sum 1, summed.

        Normalising makes every tensor count equally, so the 30k-row word embedding does not outvote the layers.
        """
        total = torch.zeros(hidden)
        for name, score in self.scores.items():
            axes = _hidden_axes(name, score, hidden)
            for axis in axes:
                marginal = score.sum(dim=[d for d in range(score.dim()) if d != axis]) if score.dim() > 1 else score
                total += marginal / marginal.sum().clamp_min(1e-12)
        return total


def _hidden_axes(name: str, tensor: torch.Tensor, hidden: int) -> list[int]:
    """The axes of a base-model tensor that index the residual stream."""
    if name.startswith("encoder.layer."):
        module, kind = name.split(".", 3)[3].rsplit(".", 1)
        layout = _LAYER_LAYOUT[module]
        kinds = layout if kind == "weight" else layout[:1]
        return [axis for axis, k in enumerate(kinds) if k == "hidden"]
    if name.startswith("embeddings.") and tensor.dim() == 2:
        return [1]
    return [axis for axis, size in enumerate(tensor.shape) if size == hidden]


def compute_importance(
    model: PreTrainedModel, data: Iterable[dict[str, torch.Tensor]] | None = None, *, max_batches: int = 4
) -> ImportanceScores:
    """|w| per weight, or |Σ w·∂L/∂w| over up to `max_batches` batches of `data` when it is given.

    L is the model's own loss when the batches hold `labels`; otherwise the mean squared final hidden state, a
    label-free proxy whose first-order change measures how much each weight shapes the representation.
    """
    _check_supported(model)
    base = model.base_model
    if data is None:
        return ImportanceScores({n: p.detach().abs().float() for n, p in base.named_parameters()}, "magnitude")
    accumulated = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in base.named_parameters()}
    was_training = model.training
    model.eval()
    seen = 0
    for batch in data:
        if seen >= max_batches:
            break
        model.zero_grad(set_to_none=True)
        if "labels" in batch:
            loss = model(**batch).loss
        else:
            inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            loss = base(**inputs).last_hidden_state.pow(2).mean()
        loss.backward()
        for name, param in base.named_parameters():
            if param.grad is not None:
                accumulated[name] += (param.detach() * param.grad).float()
        seen += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if seen == 0:
        raise ValueError("compute_importance got data with no batches; pass at least one batch, or data=None.")
    return ImportanceScores({n: a.abs() for n, a in accumulated.items()}, "gradient")


def _top_sorted(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, in ascending index order (ties: lower index first)."""
    order = torch.argsort(-scores.double(), stable=True)
    return torch.sort(order[:k]).values


def _take(tensor: torch.Tensor, axis: int, index: torch.Tensor, fill: str, generator: torch.Generator) -> torch.Tensor:
    """`tensor` indexed along `axis`; index -1 makes a new slot filled with zeros or small random values."""
    new = index < 0
    taken = tensor.index_select(axis, index.clamp_min(0)).clone()
    if new.any():
        moved = taken.movedim(axis, 0)
        if fill == "zero":
            moved[new] = 0
        else:
            std = float(tensor.float().std()) * 0.1 if tensor.numel() > 1 else 0.02
            moved[new] = torch.randn(moved[new].shape, generator=generator, dtype=tensor.dtype) * std
    return taken


@dataclass
class _Selection:
    layers: torch.Tensor
    hidden: torch.Tensor
    neurons: list[torch.Tensor]
    qk: list[torch.Tensor]
    v: list[torch.Tensor]
    query_scale: float


def _select(
    scores: ImportanceScores, parent: Architecture, parent_head_dim: int, arch: Architecture, head_dim: int
) -> _Selection:
    layers = _top_sorted(scores.layer_scores(parent.depth), arch.depth)
    qk, v, neurons = [], [], []
    for layer in layers.tolist():
        heads = _top_sorted(scores.head_scores(layer, parent_head_dim), arch.heads)
        qk_scores = scores.qk_dim_scores(layer).view(-1, parent_head_dim)
        v_scores = scores.v_dim_scores(layer).view(-1, parent_head_dim)
        qk_rows, v_rows = [], []
        for head in heads.tolist():
            offset = head * parent_head_dim
            for rows, dim_scores in ((qk_rows, qk_scores[head]), (v_rows, v_scores[head])):
                if head_dim <= parent_head_dim:
                    rows.append(offset + _top_sorted(dim_scores, head_dim))
                else:
                    rows.append(
                        torch.cat(
                            [offset + torch.arange(parent_head_dim), torch.full((head_dim - parent_head_dim,), -1)]
                        )
                    )
        qk.append(torch.cat(qk_rows))
        v.append(torch.cat(v_rows))
        neurons.append(_top_sorted(scores.neuron_scores(layer), arch.intermediate))
    hidden = _top_sorted(scores.hidden_scores(parent.hidden), arch.hidden)
    return _Selection(layers, hidden, neurons, qk, v, math.sqrt(head_dim / parent_head_dim))


def _slice_state(
    base_state: dict[str, torch.Tensor],
    target_shapes: dict[str, torch.Size],
    selection: _Selection,
    parent_hidden: int,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The parent's base-model state cut down to the candidate's shapes."""
    out: dict[str, torch.Tensor] = {}
    for new_layer, old_layer in enumerate(selection.layers.tolist()):
        index = {
            "hidden": selection.hidden,
            "neuron": selection.neurons[new_layer],
            "qk": selection.qk[new_layer],
            "v": selection.v[new_layer],
        }
        old_prefix, new_prefix = f"encoder.layer.{old_layer}.", f"encoder.layer.{new_layer}."
        for module, layout in _LAYER_LAYOUT.items():
            for kind in ("weight", "bias"):
                tensor = base_state[f"{old_prefix}{module}.{kind}"]
                for axis, axis_kind in enumerate(layout if kind == "weight" else layout[:1]):
                    fill = _NEW_DIM_FILL.get(module, "zero") if axis_kind in ("qk", "v") else "zero"
                    tensor = _take(tensor, axis, index[axis_kind], fill, generator)
                if module == "attention.self.query" and selection.query_scale != 1.0:
                    tensor = tensor * selection.query_scale
                out[f"{new_prefix}{module}.{kind}"] = tensor
    for name, tensor in base_state.items():
        if name.startswith("encoder.layer."):
            if name.split(".", 3)[3].rsplit(".", 1)[0] not in _LAYER_LAYOUT:
                raise ValueError(f"Unexpected weight {name!r}: only plain BERT encoder layers can be extracted.")
            continue
        out[name] = _slice_generic(name, tensor, target_shapes[name], selection.hidden, parent_hidden)
    return out


def _slice_generic(
    name: str, tensor: torch.Tensor, target: torch.Size, hidden_index: torch.Tensor, parent_hidden: int
) -> torch.Tensor:
    """Embeddings, pooler, task heads: every axis whose size changes is a hidden axis, sliced by the hidden pick."""
    for axis, (old, new) in enumerate(zip(tensor.shape, target)):
        if old != new:
            if old != parent_hidden or new != len(hidden_index):
                raise ValueError(f"Cannot map {name!r} from shape {tuple(tensor.shape)} to {tuple(target)}.")
            tensor = tensor.index_select(axis, hidden_index)
    return tensor.clone()


def extract_subnetwork(
    parent_model: PreTrainedModel,
    arch: Architecture,
    as_bort: bool = False,
    *,
    importance: str | ImportanceScores = "magnitude",
    data: Iterable[dict[str, torch.Tensor]] | None = None,
    seed: int = 0,
) -> PreTrainedModel:
    """The candidate `arch` of `parent_model`, initialised from the parent's most important weights.

    Args:
        parent_model: a BERT-layout model (BertModel/BertFor*, RobertaModel/RobertaFor*, BortModel/BortFor*).
        arch: the candidate's <depth, heads, hidden, intermediate>, each at most the parent's.
        as_bort: return a `BortModel` (token type 0 folded into the positions; heads at the parent's width only
            where heads do not divide hidden) instead of the parent's own class with a smaller config (which loads
            with plain transformers).
        importance: "magnitude", "gradient" (needs `data`), or precomputed `ImportanceScores` (reuse across calls).
        data: batches (dicts of tensors) for gradient importance.
        seed: seeds the small random values of widened head dimensions.
    """
    _check_supported(parent_model)
    config = parent_model.config
    parent = Architecture(*(read_dimension(config, d) for d in ("depth", "heads", "hidden", "intermediate")))
    for dim in ("depth", "heads", "hidden", "intermediate"):
        if not 1 <= getattr(arch, dim) <= getattr(parent, dim):
            raise ValueError(
                f"Candidate {dim}={getattr(arch, dim)} must lie in [1, {getattr(parent, dim)}] (the parent's)."
            )
    parent_head_dim = getattr(config, "head_dim", None) or parent.hidden // parent.heads
    if not as_bort and arch.hidden % arch.heads:
        raise ValueError(
            f"heads={arch.heads} does not divide hidden={arch.hidden}; a {type(parent_model).__name__} needs "
            "head_dim = hidden / heads. Choose heads that divide hidden, or pass as_bort=True (Bort has head_dim)."
        )
    if isinstance(importance, str):
        if importance not in ("magnitude", "gradient"):
            raise ValueError(f"importance must be 'magnitude', 'gradient' or ImportanceScores, got {importance!r}.")
        if importance == "gradient" and data is None:
            raise ValueError("importance='gradient' needs data= (a few batches of input_ids/attention_mask).")
        importance = compute_importance(parent_model, data if importance == "gradient" else None)
    new_config = candidate_config(config, arch)
    # The candidate's own head width, as the search's costs count it; only a Bort model can hold heads x d != hidden.
    head_dim = (
        parent_head_dim
        if arch.hidden % arch.heads
        else getattr(new_config, "head_dim", None) or (arch.hidden // arch.heads)
    )
    selection = _select(importance, parent, parent_head_dim, arch, head_dim)

    if as_bort:
        new_config = _bort_config(new_config, head_dim)
        target = BortModel(new_config)
    else:
        target = type(parent_model)(new_config)
    generator = torch.Generator().manual_seed(seed)
    prefix = _base_prefix(parent_model)
    parent_state = parent_model.state_dict()
    base_state = {k[len(prefix) :]: v for k, v in parent_state.items() if k.startswith(prefix)}
    if as_bort:
        base_shapes = _bert_shapes_for_bort(base_state, target, selection.hidden, parent.hidden, config)
        sliced = _slice_state(base_state, base_shapes, selection, parent.hidden, generator)
        state = {k.removeprefix("bort."): v for k, v in bert_state_dict_to_bort(sliced, prefix="").items()}
        state = _drop_roberta_position_offset(state, config)
    else:
        target_state = target.state_dict()
        new_prefix = _base_prefix(target)
        target_shapes = {k[len(new_prefix) :]: v.shape for k, v in target_state.items() if k.startswith(new_prefix)}
        sliced = _slice_state(base_state, target_shapes, selection, parent.hidden, generator)
        state = {f"{new_prefix}{k}": v for k, v in sliced.items()}
        for name, tensor in parent_state.items():  # task heads outside the base model (classifier, MLM head)
            if not name.startswith(prefix):
                state[name] = _slice_generic(name, tensor, target_state[name].shape, selection.hidden, parent.hidden)
    target.load_state_dict(state, strict=True)
    return target.to(next(parent_model.parameters()).dtype).train(parent_model.training)


def _bort_config(bert_like_config, head_dim: int) -> BortConfig:
    if bert_like_config.model_type == "bort":
        values = {**bert_like_config.to_dict(), "head_dim": head_dim}
    else:
        values = {**bort_config_from_bert(bert_like_config).to_dict(), "head_dim": head_dim}
    if bert_like_config.model_type in ("roberta", "xlm-roberta", "camembert"):
        values["max_position_embeddings"] -= bert_like_config.pad_token_id + 1
    values.pop("transformers_version", None)
    return BortConfig.from_dict(values)


def _bert_shapes_for_bort(base_state, target: BortModel, hidden_index, parent_hidden: int, config) -> dict:
    """Target shapes of the BERT-named tensors before conversion: the Bort model's, plus token types and pooler."""
    shapes = {f"{k}": v.shape for k, v in target.state_dict().items()}
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        name = "embeddings.position_embeddings.weight"
        shapes[name] = torch.Size((base_state[name].shape[0], shapes[name][1]))
    for name, tensor in base_state.items():
        if name not in shapes:
            shapes[name] = torch.Size(len(hidden_index) if size == parent_hidden else size for size in tensor.shape)
    return shapes


def _drop_roberta_position_offset(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """RoBERTa numbers positions from padding_idx + 1; Bort from 0, so the first padding_idx + 1 rows go."""
    if config.model_type in ("roberta", "xlm-roberta", "camembert"):
        name = "embeddings.position_embeddings.weight"
        state[name] = state[name][config.pad_token_id + 1 :]
    return state


__all__ = ["ImportanceScores", "SUPPORTED_MODEL_TYPES", "compute_importance", "extract_subnetwork"]
