"""Extraction of a candidate subnetwork from a parent model of any family in `families.FAMILIES`, with its weights.

The candidate keeps the parent's most important layers, attention heads, FFN neurons and hidden (residual)
dimensions. What is important is an `ImportanceScores`, computed by one of `IMPORTANCE_METHODS` (see
`compute_importance`). Where the weights are is data: the family's `WeightLayout` names, for every weight of a block,
what each axis indexes, so one slicing routine serves every family; GPT-2's transposed `Conv1D`, fused Q|K|V
projections, ALBERT's shared layer groups and grouped-query attention are each handled once, for any family that
declares them. Every kept index stays in the parent's order, so extracting the parent's own architecture copies it
exactly. The result is the parent's own class with a smaller config: it loads with plain transformers.

Attention heads. Where the config forces head_dim = hidden / heads (BERT, GPT-2, DistilBERT, ...), a candidate's
heads need not be the parent's width d. Per layer the top-`heads` heads are kept; then each kept head
* is trimmed to its best d' < d dimensions (query/key dims by their joint score, value dims by theirs), the query
  rescaled by sqrt(d'/d) so the kept dimensions' attention logits are unchanged; or
* is widened to d' > d with new dimensions whose query rows and output-projection columns are zero while key and
  value rows are small random values: the function is unchanged at extraction (the new dims add 0 to the logits
  and to the output), and no weight sits at a zero-gradient saddle, so training can use them.
Rotary families keep head_dim (the rotary tables are built for it). Under grouped-query attention whole query
groups are kept with their key-value head, chosen by the group's summed score, so heads stay a multiple of the
key-value heads. `as_bort=True` (BERT-layout parents) builds the same candidate (same head width, so the same costs
the search scored) as a Bort model; only where heads do not divide hidden does it keep whole heads at the parent's
width (Bort's `head_dim` allows heads x d != hidden).
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from ..convert import BERT_CLASSIFIER_TO_BORT, bert_state_dict_to_bort
from .families import WeightLayout, family_layout
from .space import (
    Architecture,
    candidate_config,
    config_shape,
    head_width,
    layer_sizes,
    parent_architecture,
    read_dimension,
)


logger = logging.get_logger(__name__)
_DIMS = ("depth", "heads", "hidden", "intermediate")
# How new (widened) head dimensions are filled: one side zero keeps the function, the other random keeps it trainable.
_NEW_DIM_FILL = {"q": "zero", "k": "random", "v": "random", "o": "zero"}


def _base_prefix(model: PreTrainedModel) -> str:
    return "" if model.base_model is model else f"{model.base_model_prefix}."


@dataclass
class _Geometry:
    """The parent's attention shapes and where its blocks are, read from the model and its family's layout."""

    layout: WeightLayout
    shared_layers: bool
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    blocks: list[list[str]]  # per block (the unit depth selects), the base-model prefixes of its layers

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads

    @property
    def layers(self) -> list[str]:
        return [prefix for block in self.blocks for prefix in block]

    def part_sizes(self) -> list[int]:
        """Widths of the q, k and v parts of a fused projection."""
        return [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]


def _geometry(model: PreTrainedModel) -> _Geometry:
    config = model.config
    spec, layout = family_layout(getattr(config, "model_type", ""))
    base = model.base_model
    heads = read_dimension(config, "heads")
    kv_heads = (getattr(config, "num_key_value_heads", None) if spec.has_kv_heads else None) or heads
    blocks_module = base.get_submodule(layout.blocks)
    if layout.inner:
        blocks = [
            [f"{layout.blocks}.{g}.{layout.inner}.{j}." for j in range(len(block.get_submodule(layout.inner)))]
            for g, block in enumerate(blocks_module)
        ]
    else:
        blocks = [[f"{layout.blocks}.{i}."] for i in range(len(blocks_module))]
    query = base.get_submodule(blocks[0][0] + layout.query).weight
    width = query.shape[1] if layout.transposed else query.shape[0]
    if layout.modules[layout.query][0] == "qkv":
        width = width * heads // (heads + 2 * kv_heads)
    return _Geometry(
        layout,
        spec.shared_layers,
        heads,
        kv_heads,
        width // heads,
        read_dimension(config, "hidden"),
        read_dimension(config, "intermediate"),
        blocks,
    )


# ----- importance -----


@dataclass
class ImportanceScores:
    """Group importance of one parent: higher is kept first. Per-layer lists follow the base model's layer order
    (ALBERT: every layer of every group)."""

    method: str
    layers: torch.Tensor  # one per block (what depth selects)
    heads: list[torch.Tensor]  # per layer, one per query head
    qk: list[torch.Tensor]  # per layer, one per query row (heads x head_dim): query/key dims, jointly
    v: list[torch.Tensor]  # per layer, one per attention-output column (heads x head_dim): value dims
    neurons: list[torch.Tensor]  # per layer, one per FFN neuron
    hidden: torch.Tensor  # one per residual dimension


def _expand_kv(scores: torch.Tensor, g: _Geometry) -> torch.Tensor:
    """Key-value-head scores (kv x d) spread to the query heads that share them (heads x d)."""
    return scores.view(g.kv_heads, 1, g.head_dim).expand(-1, g.group, -1).reshape(-1)


def _as_out_in(tensor: torch.Tensor, layout: WeightLayout, n_axes: int) -> torch.Tensor:
    return tensor.T if layout.transposed and n_axes == 2 and tensor.dim() == 2 else tensor


def _marginal(score: torch.Tensor, axis: int) -> torch.Tensor:
    return score.sum(dim=[d for d in range(score.dim()) if d != axis]) if score.dim() > 1 else score


def _scores_from_weights(per_weight: dict[str, torch.Tensor], g: _Geometry, method: str) -> ImportanceScores:
    """Group scores as sums of per-weight scores over the group's weights (read through the layout).

    The hidden score sums every hidden-indexed tensor's marginal normalised to sum 1, so that the 30k-row word
    embedding does not outvote the layers.
    """
    layout, width = g.layout, g.heads * g.head_dim
    sizes = {"q": width, "o": width, "k": g.kv_heads * g.head_dim, "v": g.kv_heads * g.head_dim}
    sizes["neuron"] = g.intermediate
    hidden = torch.zeros(g.hidden)
    heads, qk, v, neurons, layers, covered = [], [], [], [], [], set()

    def add_hidden(marginal: torch.Tensor) -> None:
        hidden.add_(marginal / marginal.sum().clamp_min(1e-12))

    for block in g.blocks:
        total = torch.zeros(())
        for prefix in block:
            marginals = {kind: torch.zeros(size) for kind, size in sizes.items()}
            for module, kinds in layout.modules.items():
                for suffix in ("weight", "bias"):
                    name = f"{prefix}{module}.{suffix}"
                    if name not in per_weight:
                        continue
                    covered.add(name)
                    score = _as_out_in(per_weight[name], layout, len(kinds))
                    total = total + score.sum()
                    for axis, kind in enumerate(kinds if suffix == "weight" else kinds[:1]):
                        marginal = _marginal(score, axis)
                        if kind == "hidden":
                            add_hidden(marginal)
                        elif kind == "qkv":
                            for part, piece in zip("qkv", marginal.split(g.part_sizes())):
                                marginals[part] += piece
                        else:
                            marginals[kind] += marginal
            qk.append(marginals["q"] + _expand_kv(marginals["k"], g))
            v.append(marginals["o"] + _expand_kv(marginals["v"], g))
            heads.append((qk[-1] + v[-1]).view(g.heads, g.head_dim).sum(1))
            neurons.append(marginals["neuron"])
        layers.append(total)
    for name, score in per_weight.items():
        if name in covered:
            continue
        if name.startswith(f"{layout.blocks}."):
            raise ValueError(_uncovered(name, layout))
        for axis, size in enumerate(score.shape):
            if size == g.hidden:
                add_hidden(_marginal(score, axis))
    return ImportanceScores(method, torch.stack(layers), heads, qk, v, neurons, hidden)


def _uncovered(name: str, layout: WeightLayout) -> str:
    return (
        f"Weight {name!r} is in a block but its family's WeightLayout does not describe it (modules: "
        f"{sorted(layout.modules)}); add its module to the layout in hf_bort/ose/families.py."
    )


def _importance_loss(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The parent's own loss on a batch: its task loss when it has a head and the batch has labels; next-token loss
    for a causal LM with its head; otherwise the mean squared final hidden state (a label-free proxy for how much a
    group shapes the representation that is handed on)."""
    if "labels" in batch and "labels" in inspect.signature(model.forward).parameters:
        return model(**batch).loss
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    if type(model).can_generate() and model.get_output_embeddings() is not None:
        labels = inputs["input_ids"].masked_fill(inputs.get("attention_mask", 1) == 0, -100)
        return model(**inputs, labels=labels).loss
    return model.base_model(**inputs).last_hidden_state.float().pow(2).mean()


def _batches(model: PreTrainedModel, data: Iterable[dict[str, torch.Tensor]], max_batches: int):
    device = next(model.parameters()).device
    for seen, batch in enumerate(data):
        if seen >= max_batches:
            break
        yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _magnitude(model, g, data, max_batches) -> ImportanceScores:
    per_weight = {n: p.detach().abs().float().cpu() for n, p in model.base_model.named_parameters()}
    return _scores_from_weights(per_weight, g, "magnitude")


def _weight_taylor(model, g, data, max_batches) -> ImportanceScores:
    """|Σ_batches w·∂L/∂w| per weight (first-order Taylor, Molchanov et al. 2019), summed into groups."""
    base = model.base_model
    accumulated = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in base.named_parameters()}
    seen = 0
    for batch in _batches(model, data, max_batches):
        model.zero_grad(set_to_none=True)
        _importance_loss(model, batch).backward()
        for name, param in base.named_parameters():
            if param.grad is not None:
                accumulated[name] += (param.detach() * param.grad).float()
        seen += 1
    model.zero_grad(set_to_none=True)
    _check_seen(seen)
    return _scores_from_weights({n: a.abs().cpu() for n, a in accumulated.items()}, g, "gradient")


def _check_seen(seen: int) -> None:
    if seen == 0:
        raise ValueError("compute_importance got data with no batches; pass at least one batch, or data=None.")


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _with_first(output, value):
    return (value, *output[1:]) if isinstance(output, tuple) else value


def _install_probes(model: PreTrainedModel, g: _Geometry, visit: Callable) -> list:
    """Hooks that pass every group's activations through `visit(kind, index, tensor) -> tensor`.

    Kinds: "v" (the attention output projection's input, heads x head_dim), "qk" (the queries), "neuron" (the FFN
    output projection's input), "hidden" (every output onto the residual stream: the embeddings, the blocks'
    output projections and norms, the final norm), and "layer" (a block's (input, output) pair).
    """
    base, layout, width = model.base_model, g.layout, g.heads * g.head_dim
    handles = []

    def on_input(kind, index):
        return lambda module, args: (visit(kind, index, args[0]), *args[1:])

    def on_queries(index):
        def hook(module, args, output):
            queries = visit("qk", index, output[..., :width])
            return torch.cat([queries, output[..., width:]], dim=-1) if output.shape[-1] > width else queries

        return hook

    def on_hidden(module, args, output):
        value = _first(output)
        return _with_first(output, visit("hidden", 0, value)) if value.shape[-1] == g.hidden else output

    for index, prefix in enumerate(g.layers):
        handles.append(
            base.get_submodule(prefix + layout.attention_output).register_forward_pre_hook(on_input("v", index))
        )
        handles.append(base.get_submodule(prefix + layout.query).register_forward_hook(on_queries(index)))
        handles.append(
            base.get_submodule(prefix + layout.ffn_output).register_forward_pre_hook(on_input("neuron", index))
        )
        for module, kinds in layout.modules.items():
            if kinds[0] == "hidden":
                handles.append(base.get_submodule(prefix + module).register_forward_hook(on_hidden))
    for path in layout.hidden_outputs:
        try:
            module = base.get_submodule(path)
        except AttributeError:
            continue  # e.g. ELECTRA's embeddings_project, absent when the embedding width is the hidden size
        handles.append(module.register_forward_hook(on_hidden))
    inputs = {}
    for index, block in enumerate(base.get_submodule(layout.blocks)):

        def store(module, args, kwargs, index=index):
            inputs[index] = args[0] if args else kwargs["hidden_states"]

        def mix(module, args, output, index=index):
            return _with_first(output, visit("layer", index, (inputs.pop(index), _first(output))))

        handles.append(block.register_forward_pre_hook(store, with_kwargs=True))
        handles.append(block.register_forward_hook(mix))
    return handles


def _group_gradients(model, g, data, max_batches, method: str) -> ImportanceScores:
    """Gates (all ones) multiply every group; ∂L/∂gate is the first-order loss change of scaling that group, i.e.
    -(L(group removed) - L) to first order (Molchanov et al. 2019's group Taylor; a head's gate is the sum of its
    dimensions'). "group-taylor": |mean over batches of ∂L/∂gate|; "fisher": mean of (∂L/∂gate)² (the empirical
    Fisher of the gate, Kwon et al. 2022)."""
    width, n_layers = g.heads * g.head_dim, len(g.layers)
    device = next(model.parameters()).device
    shapes = {"v": (n_layers, width), "qk": (n_layers, width), "neuron": (n_layers, g.intermediate)}
    shapes.update(hidden=(1, g.hidden), layer=(len(g.blocks), 1))
    totals = {
        kind: torch.zeros(shape, dtype=torch.float64)
        for kind, shape in {**shapes, "head": (n_layers, g.heads)}.items()
    }
    gates: dict[str, torch.Tensor] = {}

    def visit(kind, index, value):
        gate = gates[kind][index]
        if kind == "layer":
            start, end = value
            return start + gate * (end - start)
        return value * gate.to(value.dtype)

    handles = _install_probes(model, g, visit)
    seen = 0
    try:
        for batch in _batches(model, data, max_batches):
            gates = {k: torch.ones(s, device=device, requires_grad=True) for k, s in shapes.items()}
            model.zero_grad(set_to_none=True)
            _importance_loss(model, batch).backward()
            grads = {k: gate.grad.double().cpu() for k, gate in gates.items()}
            grads["head"] = grads["v"].view(n_layers, g.heads, g.head_dim).sum(-1)
            for kind, grad in grads.items():
                totals[kind] += grad.pow(2) if method == "fisher" else grad
            seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    _check_seen(seen)
    scores = {k: (t / seen if method == "fisher" else (t / seen).abs()).float() for k, t in totals.items()}
    return ImportanceScores(
        method,
        scores["layer"].view(-1),
        list(scores["head"]),
        list(scores["qk"]),
        list(scores["v"]),
        list(scores["neuron"]),
        scores["hidden"].view(-1),
    )


def _activation(model, g, data, max_batches) -> ImportanceScores:
    """Mean activation magnitudes over the batches' real tokens (Minitron, Muralidharan et al. 2024): |x| per FFN
    neuron, query and value dimension, the L2 norm of each head's output per token, |x| per hidden channel on every
    output onto the residual stream (each site normalised to sum 1), and 1 - cos(block input, block output) per
    block (ShortGPT's block influence: a block that barely changes its input matters little)."""
    width, n_layers = g.heads * g.head_dim, len(g.layers)
    totals = {
        "v": torch.zeros(n_layers, width, dtype=torch.float64),
        "qk": torch.zeros(n_layers, width, dtype=torch.float64),
        "head": torch.zeros(n_layers, g.heads, dtype=torch.float64),
        "neuron": torch.zeros(n_layers, g.intermediate, dtype=torch.float64),
        "hidden": torch.zeros(1, g.hidden, dtype=torch.float64),
        "layer": torch.zeros(len(g.blocks), 1, dtype=torch.float64),
    }
    counts = {kind: torch.zeros(len(t), dtype=torch.float64) for kind, t in totals.items()}
    mask = {}

    def token_mean(values: torch.Tensor) -> torch.Tensor:
        """Mean over real tokens of a (batch, tokens, ...) tensor, padding excluded."""
        weights = mask["tokens"].to(values.dtype).view(*mask["tokens"].shape, *([1] * (values.dim() - 2)))
        weighted = values * weights  # broadcasts a (1, tokens, ...) tensor such as GPT-2's position embeddings
        count = weights.expand(*weighted.shape[:2], *weights.shape[2:]).sum()
        return weighted.sum((0, 1)).double().cpu() / count.double().cpu()

    def visit(kind, index, value):
        with torch.no_grad():
            if kind == "layer":
                start, end = value
                totals[kind][index] += token_mean(1 - torch.cosine_similarity(start.float(), end.float(), dim=-1))
                counts[kind][index] += 1
                return end
            else:
                magnitude = token_mean(value.float().abs())
                if kind == "hidden":
                    magnitude = magnitude / magnitude.sum().clamp_min(1e-12)
                totals[kind][index] += magnitude
                if kind == "v":
                    per_head = value.float().unflatten(-1, (g.heads, g.head_dim)).norm(dim=-1)
                    totals["head"][index] += token_mean(per_head)
                    counts["head"][index] += 1
                counts[kind][index] += 1
        return value

    handles = _install_probes(model, g, visit)
    seen = 0
    try:
        with torch.no_grad():
            for batch in _batches(model, data, max_batches):
                ids = batch["input_ids"]
                mask["tokens"] = batch.get("attention_mask", torch.ones_like(ids)).bool()
                inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                model.base_model(**inputs)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
    _check_seen(seen)
    scores = {k: (t / counts[k].clamp_min(1).unsqueeze(1)).float() for k, t in totals.items()}
    return ImportanceScores(
        "activation",
        scores["layer"].view(-1),
        list(scores["head"]),
        list(scores["qk"]),
        list(scores["v"]),
        list(scores["neuron"]),
        scores["hidden"].view(-1),
    )


# Every importance score by name: (function(model, geometry, data, max_batches), needs data).
IMPORTANCE_METHODS: dict[str, tuple[Callable, bool]] = {
    "magnitude": (_magnitude, False),
    "gradient": (_weight_taylor, True),
    "group-taylor": (lambda m, g, d, n: _group_gradients(m, g, d, n, "group-taylor"), True),
    "fisher": (lambda m, g, d, n: _group_gradients(m, g, d, n, "fisher"), True),
    "activation": (_activation, True),
}


def compute_importance(
    model: PreTrainedModel,
    data: Iterable[dict[str, torch.Tensor]] | None = None,
    *,
    method: str | None = None,
    max_batches: int = 4,
) -> ImportanceScores:
    """Group importance of `model`'s layers, heads, head dimensions, FFN neurons and hidden dimensions.

    Methods (`IMPORTANCE_METHODS`): "magnitude" (|w| summed per group; needs no data), "gradient" (per-weight
    first-order Taylor |Σ w·∂L/∂w|), "group-taylor" and "fisher" (the first-order loss change, or its square, of
    removing each group as a whole), "activation" (mean |activation|, Minitron's criterion, which suits decoders).
    The loss is the parent's own: its task loss when batches hold `labels`, its next-token loss for a causal LM,
    else the mean squared final hidden state. Up to `max_batches` batches of `data` are used; they move to the
    model's device. Default: "magnitude" without data, "gradient" with it (the historical behaviour).
    """
    method = method or ("magnitude" if data is None else "gradient")
    if method not in IMPORTANCE_METHODS:
        raise ValueError(f"Unknown importance method {method!r}; choose one of {', '.join(IMPORTANCE_METHODS)}.")
    function, needs_data = IMPORTANCE_METHODS[method]
    if needs_data and data is None:
        raise ValueError(f"importance {method!r} needs data= (a few batches of input_ids/attention_mask).")
    geometry = _geometry(model)
    was_training = model.training
    model.eval()
    try:
        return function(model, geometry, data, max_batches)
    finally:
        model.train(was_training)


# ----- selection and slicing -----


def _top_sorted(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k highest scores, in ascending index order (ties: lower index first)."""
    order = torch.argsort(-scores.double(), stable=True)
    return torch.sort(order[:k]).values


def _rows(units: torch.Tensor, width: int) -> torch.Tensor:
    return (units[:, None] * width + torch.arange(width)).reshape(-1)


def spread_by_importance(layer_scores: list[torch.Tensor], total: int) -> list[int]:
    """How many of `total` units (heads, or FFN neurons) each layer keeps: every layer its best unit, then the rest
    to the highest scores across all layers (ties: earlier layer, lower index), at most a layer's own count each.

    Global ranking is how loss-based pruners allocate (Kwon et al. 2022); the first unit per layer keeps every
    sub-layer (a skipped one would change the costs the search priced)."""
    sizes = [len(scores) for scores in layer_scores]
    if not len(sizes) <= total <= sum(sizes):
        raise ValueError(f"Cannot spread {total} units over layers of sizes {sizes}: need one to {sum(sizes)}.")
    counts = [1] * len(sizes)
    rest = []
    for layer, scores in enumerate(layer_scores):
        best = int(torch.argsort(-scores.double(), stable=True)[0])
        rest += [(-float(score), layer, index) for index, score in enumerate(scores.tolist()) if index != best]
    for _, layer, _ in sorted(rest)[: total - len(sizes)]:
        counts[layer] += 1
    return counts


def _attention_index(scores: ImportanceScores, layer: int, g: _Geometry, heads: int, head_dim: int) -> dict:
    """Which q / k / v rows and output columns a candidate layer keeps (-1: a new, widened dimension)."""
    d = g.head_dim
    if g.group > 1:
        if head_dim != d:
            raise ValueError(f"A grouped-query parent keeps head_dim={d}; the candidate asks for {head_dim}.")
        groups = _top_sorted(scores.heads[layer].view(g.kv_heads, g.group).sum(1), heads // g.group)
        query = _rows(_rows(groups, g.group), d)
        key = _rows(groups, d)
        return {"q": query, "o": query, "k": key, "v": key}
    kept = _top_sorted(scores.heads[layer], heads)
    qk_scores, v_scores = scores.qk[layer].view(-1, d), scores.v[layer].view(-1, d)
    qk_rows, v_rows = [], []
    for head in kept.tolist():
        for rows, dim_scores in ((qk_rows, qk_scores[head]), (v_rows, v_scores[head])):
            if head_dim <= d:
                rows.append(head * d + _top_sorted(dim_scores, head_dim))
            else:
                rows.append(torch.cat([head * d + torch.arange(d), torch.full((head_dim - d,), -1)]))
    qk, v = torch.cat(qk_rows), torch.cat(v_rows)
    return {"q": qk, "k": qk, "v": v, "o": v}


@dataclass
class _Selection:
    blocks: list[int]
    hidden: torch.Tensor
    layers: list[dict[str, torch.Tensor]]  # per kept layer (block order): axis kind -> kept index
    query_scale: float
    skipped: list[set[str]]  # per kept layer: the sub-layers it drops ("attention" with 0 heads, "mlp" with 0 neurons)


def _select(
    scores: ImportanceScores, g: _Geometry, hidden: int, blocks: list[int], heads: list[int], neurons: list[int],
    head_dim: int,
) -> _Selection:  # fmt: skip
    kept_hidden = _top_sorted(scores.hidden, hidden)
    layers, skipped = [], []
    for layer, n_heads, n_neurons in zip(_layer_indices(g, blocks), heads, neurons):
        index = _attention_index(scores, layer, g, n_heads, head_dim) if n_heads else {}
        index.update(neuron=_top_sorted(scores.neurons[layer], n_neurons), hidden=kept_hidden)
        layers.append(index)
        skipped.append({name for name, n in (("attention", n_heads), ("mlp", n_neurons)) if n == 0})
    return _Selection(blocks, kept_hidden, layers, math.sqrt(head_dim / g.head_dim), skipped)


def _layer_indices(g: _Geometry, blocks: list[int]) -> list[int]:
    """The base model's layer indices of the kept blocks, in order (ALBERT: every layer of each kept group)."""
    first = [0]
    for block in g.blocks:
        first.append(first[-1] + len(block))
    return [layer for block in blocks for layer in range(first[block], first[block + 1])]


def _take(tensor: torch.Tensor, axis: int, index: torch.Tensor, fill: str, generator: torch.Generator) -> torch.Tensor:
    """`tensor` indexed along `axis`; index -1 makes a new slot filled with zeros or small random values."""
    new = index < 0
    taken = tensor.index_select(axis, index.clamp_min(0).to(tensor.device)).clone()
    if new.any():
        moved = taken.movedim(axis, 0)
        new = new.to(tensor.device)
        if fill == "zero":
            moved[new] = 0
        else:
            std = float(tensor.float().std()) * 0.1 if tensor.numel() > 1 else 0.02
            noise = torch.randn(moved[new].shape, generator=generator, dtype=torch.float32) * std
            moved[new] = noise.to(tensor.device, tensor.dtype)
    return taken


def _take_kind(tensor, axis, kind, index, g: _Geometry, scale: float, generator) -> torch.Tensor:
    if kind == "qkv":
        parts = tensor.split(g.part_sizes(), dim=axis)
        return torch.cat([_take_kind(p, axis, k, index, g, scale, generator) for k, p in zip("qkv", parts)], axis)
    taken = _take(tensor, axis, index[kind], _NEW_DIM_FILL.get(kind, "zero"), generator)
    return taken * scale if kind == "q" and axis == 0 and scale != 1.0 else taken


def _slice_blocks(base_state: dict, g: _Geometry, selection: _Selection, generator) -> dict[str, torch.Tensor]:
    """The kept blocks' weights, renumbered and cut to the candidate's shapes through the layout; a skipped
    sub-layer's weights are left out."""
    layout, out = g.layout, {}
    old_layers = [prefix for block in selection.blocks for prefix in g.blocks[block]]
    new_layers = [
        f"{layout.blocks}.{new}." + (f"{layout.inner}.{j}." if layout.inner else "")
        for new, block in enumerate(selection.blocks)
        for j in range(len(g.blocks[block]))
    ]
    for old_prefix, new_prefix, index, skipped in zip(old_layers, new_layers, selection.layers, selection.skipped):
        for module, kinds in layout.modules.items():
            if layout.sublayer(module) in skipped:
                continue
            for suffix in ("weight", "bias"):
                name = f"{old_prefix}{module}.{suffix}"
                if name not in base_state:
                    continue
                tensor = _as_out_in(base_state[name], layout, len(kinds))
                for axis, kind in enumerate(kinds if suffix == "weight" else kinds[:1]):
                    tensor = _take_kind(tensor, axis, kind, index, g, selection.query_scale, generator)
                out[f"{new_prefix}{module}.{suffix}"] = _as_out_in(tensor, layout, len(kinds)).contiguous()
    block_prefixes = {prefix for block in g.blocks for prefix in block}
    for name in base_state:
        if name.startswith(f"{layout.blocks}."):
            prefix = next((p for p in block_prefixes if name.startswith(p)), None)
            if prefix is None or name[len(prefix) :].rsplit(".", 1)[0] not in layout.modules:
                raise ValueError(_uncovered(name, layout))
    return out


def _slice_generic(
    name: str, tensor: torch.Tensor, target: torch.Size, hidden_index: torch.Tensor, parent_hidden: int
) -> torch.Tensor:
    """Embeddings, norms and heads outside the blocks: every axis whose size changes is a hidden axis."""
    for axis, (old, new) in enumerate(zip(tensor.shape, target)):
        if old != new:
            if old != parent_hidden or new != len(hidden_index):
                raise ValueError(f"Cannot map {name!r} from shape {tuple(tensor.shape)} to {tuple(target)}.")
            tensor = tensor.index_select(axis, hidden_index.to(tensor.device))
    return tensor.clone()


def _layer_counts(
    allocation, scores: ImportanceScores, g: _Geometry, arch: Architecture, blocks: list[int]
) -> tuple[list[int], list[int]]:
    """Heads and FFN neurons of each kept layer: alike ("uniform"), spread by importance ("importance"), or given
    ({"heads": [...], "intermediate": [...]}, one count per layer; 0 skips the sub-layer)."""
    layers = _layer_indices(g, blocks)
    if allocation == "uniform":
        return [arch.heads] * len(layers), [arch.intermediate] * len(layers)
    if allocation == "importance":
        if g.group > 1:
            raise ValueError(
                "allocation='importance' spreads single heads over layers; a grouped-query parent keeps whole "
                "query groups, so extract it with allocation='uniform'."
            )
        heads = spread_by_importance([scores.heads[layer] for layer in layers], arch.heads * len(layers))
        neurons = spread_by_importance([scores.neurons[layer] for layer in layers], arch.intermediate * len(layers))
        return heads, neurons
    if not isinstance(allocation, dict) or set(allocation) != {"heads", "intermediate"}:
        raise ValueError(
            f"allocation must be 'uniform', 'importance' or {{'heads': [...], 'intermediate': [...]}} (one count per "
            f"layer), got {allocation!r}."
        )
    heads, neurons = [int(v) for v in allocation["heads"]], [int(v) for v in allocation["intermediate"]]
    for name, counts, top in (("heads", heads, g.heads), ("intermediate", neurons, g.intermediate)):
        if len(counts) != len(layers) or not all(0 <= c <= top for c in counts):
            raise ValueError(
                f"allocation[{name!r}] must hold {len(layers)} counts (one per layer of the candidate) in [0, {top}] "
                f"(the parent's; 0 skips the sub-layer), got {counts}."
            )
    return heads, neurons


# What a BERT-layout parent's task head becomes in a Bort student: (Bort class, renaming of the head's weights).
_BORT_HEADS = {
    "ForSequenceClassification": (
        "BortForSequenceClassification",
        {
            **BERT_CLASSIFIER_TO_BORT,
            "classifier.dense.": "classifier.dense.",  # RoBERTa's head already has Bort's shape
            "classifier.out_proj.": "classifier.out_proj.",
        },
    ),
    "ForMaskedLM": (
        "BortForMaskedLM",
        {
            "cls.predictions.transform.dense.": "lm_head.dense.",  # BERT
            "cls.predictions.transform.LayerNorm.": "lm_head.layer_norm.",
            "cls.predictions.bias": "lm_head.decoder.bias",
            "lm_head.dense.": "lm_head.dense.",  # RoBERTa
            "lm_head.layer_norm.": "lm_head.layer_norm.",
            "lm_head.bias": "lm_head.decoder.bias",
        },
    ),
}


def _bort_head_name(name: str, renames: dict[str, str]) -> str | None:
    for old, new in renames.items():
        if name == old or (old.endswith(".") and name.startswith(old)):
            return new + name[len(old) :] if old.endswith(".") else new
    return None


def _kept_blocks(importance: ImportanceScores, g: _Geometry, shape, arch: Architecture) -> list[int]:
    """The blocks a candidate keeps: its depth's most important (ALBERT: at most the parent's layer groups)."""
    n_blocks = min(shape.layer_groups, arch.depth) if g.shared_layers else arch.depth
    return _top_sorted(importance.layers, n_blocks).tolist()


def layer_allocation(
    parent_model: PreTrainedModel, arch: Architecture, allocation: str | dict, importance: ImportanceScores
) -> dict[str, list[int]]:
    """The heads and FFN neurons of each layer `extract_subnetwork` gives `arch` with this `allocation` and these
    scores, without building the student (what the search times a candidate with before it trains it)."""
    g = _geometry(parent_model)
    blocks = _kept_blocks(importance, g, config_shape(parent_model.config, parent_architecture(parent_model.config)),
                          arch)  # fmt: skip
    heads, neurons = _layer_counts(allocation, importance, g, arch, blocks)
    return {"heads": heads, "intermediate": neurons}


def extract_subnetwork(
    parent_model: PreTrainedModel,
    arch: Architecture,
    as_bort: bool = False,
    *,
    allocation: str | dict = "uniform",
    importance: str | ImportanceScores = "magnitude",
    data: Iterable[dict[str, torch.Tensor]] | None = None,
    seed: int = 0,
) -> PreTrainedModel:
    """The candidate `arch` of `parent_model`, initialised from the parent's most important weights.

    Args:
        parent_model: a base model or a model with a head, of any family with a layout in `families.FAMILIES`.
        arch: the candidate's <depth, heads, hidden, intermediate> (each at most the parent's) and, where the family
            allows, `head_dim` (at most the parent's head width; None: hidden / heads).
        as_bort: return a Bort model even where the parent's own class can hold the candidate (BERT-layout parents).
        allocation: how the candidate's D x A heads and D x I FFN neurons are spread over its layers: "uniform"
            (every layer alike), "importance" (every layer its best head and neuron, the rest by importance across
            layers; `hf_bort.ose.extract.spread_by_importance`), or explicit counts {"heads": [...],
            "intermediate": [...]} (one per layer; 0 skips the sub-layer).
        importance: a method of `IMPORTANCE_METHODS` (all but "magnitude" need `data`), or precomputed
            `ImportanceScores` (reuse them across candidates).
        data: batches (dicts of tensors) for data-driven importance.
        seed: seeds the small random values of widened head dimensions.

    The student is the parent's own class with a smaller config (it loads with plain transformers) where that class
    can hold it: layers alike, heads filling the hidden size. Otherwise (heads of the parent's width that do not fill
    it, layers that differ) it is a Bort model (BERT-layout parents), with the parent's sequence-classification or
    masked-LM head carried over. The result lives on the parent's device, in its dtype, in its train/eval mode.
    """
    from .. import modeling_bort

    config = parent_model.config
    g = _geometry(parent_model)
    parent = parent_architecture(config)
    shape = config_shape(config, parent)
    for dim in _DIMS:
        if not 1 <= getattr(arch, dim) <= getattr(parent, dim):
            raise ValueError(
                f"Candidate {dim}={getattr(arch, dim)} must lie in [1, {getattr(parent, dim)}] (the parent's)."
            )
    if arch.heads % g.group:
        raise ValueError(
            f"heads={arch.heads} is not a multiple of {g.group}, the query heads per key-value head of this "
            "grouped-query parent; choose a multiple (whole query groups are kept with their key-value head)."
        )
    if as_bort and not shape.family.per_layer:
        raise ValueError(
            f"as_bort=True converts BERT-layout parents (bert, roberta, xlm-roberta, camembert, bort); got "
            f"{config.model_type!r}. Leave as_bort=False to get the parent's own class."
        )
    if arch.head_dim is not None and shape.family.head_width == "tied" and arch.head_dim * arch.heads != arch.hidden:
        raise ValueError(
            f"A {config.model_type!r} model's heads are hidden / heads wide; head_dim={arch.head_dim} cannot be "
            "chosen. Leave head_dim unset."
        )
    head_dim = head_width(arch, shape)
    if shape.family.head_width == "fixed" and head_dim != g.head_dim:
        raise ValueError(f"A {config.model_type!r} parent keeps head_dim={g.head_dim}; the candidate asks {head_dim}.")
    if arch.head_dim is not None and shape.family.head_width == "free" and head_dim > g.head_dim:
        raise ValueError(
            f"head_dim={head_dim} is wider than the parent's heads ({g.head_dim}); a head keeps at most the "
            "dimensions it has."
        )
    if isinstance(importance, str):
        importance = compute_importance(parent_model, data if importance != "magnitude" else None, method=importance)
    blocks = _kept_blocks(importance, g, shape, arch)
    heads, neurons = _layer_counts(allocation, importance, g, arch, blocks)
    alike = len(set(heads)) == 1 and len(set(neurons)) == 1 and min(heads) > 0 and min(neurons) > 0
    # the parent's class holds layers alike whose heads fill the hidden size, or any head width if it has `head_dim`
    holds = alike and (shape.family.has_head_dim_field or head_dim * heads[0] == arch.hidden)
    bort = as_bort or (shape.model_type != "bort" and not holds)
    if (bort or not alike) and not shape.family.per_layer:
        raise ValueError(
            f"This candidate needs per-layer sizes or heads that do not fill the hidden size, which a "
            f"{config.model_type!r} model cannot load (only BERT-layout parents, whose students are Bort models, "
            "can); use allocation='uniform' and heads that divide hidden."
        )
    new_config = candidate_config(
        config,
        arch if alike else replace(arch, head_dim=head_dim),
        shape,
        parent,
        layer_heads=None if alike else heads,
        layer_intermediate=None if alike else neurons,
        as_bort=bort,
    )
    layer_types = getattr(config, "layer_types", None)
    if not g.shared_layers and isinstance(layer_types, list) and len(layer_types) == len(g.blocks):
        new_config.layer_types = [layer_types[i] for i in blocks]  # each kept layer keeps its kind
    # Which of the parent's layers each student layer was cut from: what layer-wise distillation matches them with.
    new_config.parent_layers = _layer_indices(g, blocks)
    selection = _select(importance, g, arch.hidden, blocks, heads, neurons, head_dim)
    generator = torch.Generator().manual_seed(seed)
    prefix = _base_prefix(parent_model)
    parent_state = parent_model.state_dict()
    base_state = {k[len(prefix) :]: v for k, v in parent_state.items() if k.startswith(prefix)}
    blocks_state = _slice_blocks(base_state, g, selection, generator)
    rest = {k: v for k, v in base_state.items() if not k.startswith(f"{g.layout.blocks}.")}
    if bort and shape.model_type != "bort":
        head_class, renames = modeling_bort.BortModel, {}
        for suffix, (name, mapping) in _BORT_HEADS.items():
            if type(parent_model).__name__.endswith(suffix):
                head_class, renames = getattr(modeling_bort, name), mapping
        if head_class is modeling_bort.BortModel and parent_model.base_model is not parent_model:
            logger.warning(
                f"The student is a BortModel: the parent's {type(parent_model).__name__} head has no Bort counterpart "
                "that extraction fills (sequence classification and masked LM carry over), so it is not kept."
            )
        target = head_class(new_config)
        state = _bort_state(parent_state, prefix, blocks_state, rest, target, selection, parent, config, renames)
    else:  # the parent's own class (a Bort parent's students are Bort models of its class)
        target = type(parent_model)(new_config)
        for name, _ in list(target.base_model.named_children()):  # e.g. BertModel(add_pooling_layer=False)
            if getattr(parent_model.base_model, name, ...) is None:
                setattr(target.base_model, name, None)  # what the parent was built without, the student is too
        state = _own_class_state(parent_state, prefix, blocks_state, rest, target, selection, parent)
    target.load_state_dict(state, strict=True)
    reference = next(parent_model.parameters())
    return target.to(device=reference.device, dtype=reference.dtype).train(parent_model.training)


def _put_kind(tensor: torch.Tensor, axis: int, kind: str, index: dict, size: int, g: _Geometry) -> torch.Tensor:
    """`_take_kind` undone: `tensor` spread along `axis` to `size` slots, at the kept indices, zeros elsewhere."""
    if kind == "qkv":
        parts = tensor.split([len(index[k]) for k in "qkv"], dim=axis)
        placed = [_put_kind(p, axis, k, index, width, g) for k, p, width in zip("qkv", parts, g.part_sizes())]
        return torch.cat(placed, axis)
    shape = list(tensor.shape)
    shape[axis] = size
    return tensor.new_zeros(shape).index_copy(axis, index[kind].to(tensor.device), tensor)


def place_subnetwork(
    parent_model: PreTrainedModel, sub_model: PreTrainedModel, importance: ImportanceScores
) -> PreTrainedModel:
    """`parent_model`'s shape holding `sub_model`'s weights where extraction took them from, zeros elsewhere.

    `sub_model` was extracted from `parent_model` with these `importance` scores and explicit per-layer counts, kept
    every layer, the hidden size and the head width, and may have been trained since. The result computes exactly
    what `sub_model` computes (a zeroed head or neuron adds nothing), and scoring and extracting from it again is
    gradual compression: each step cuts from the previous step's trained weights.
    """
    g = _geometry(parent_model)
    sizes = layer_sizes(sub_model.config)
    everything = _layer_indices(g, list(range(len(g.blocks))))
    if (
        type(sub_model) is not type(parent_model)
        or g.shared_layers
        or getattr(sub_model.config, "parent_layers", None) != everything
        or sub_model.config.hidden_size != g.hidden
        or min(sizes["heads"] + sizes["intermediate"]) < 1
    ):
        raise ValueError(
            f"place_subnetwork takes a {type(parent_model).__name__} extracted from this parent that keeps all its "
            f"{len(everything)} layers, hidden size {g.hidden} and head width {g.head_dim}, with at least one head and "
            f"FFN neuron per layer; got a {type(sub_model).__name__} with layer sizes {sizes}."
        )
    blocks = list(range(len(g.blocks)))
    selection = _select(importance, g, g.hidden, blocks, sizes["heads"], sizes["intermediate"], g.head_dim)
    layout, prefix = g.layout, _base_prefix(parent_model)
    sub_state = sub_model.state_dict()
    full_shapes = {name: tensor.shape for name, tensor in parent_model.state_dict().items()}
    state = {}
    for layer_prefix, index in zip(g.layers, selection.layers):
        for module, kinds in layout.modules.items():
            for suffix in ("weight", "bias"):
                name = f"{prefix}{layer_prefix}{module}.{suffix}"
                if name not in sub_state:
                    continue
                full = _as_out_in(torch.empty(full_shapes[name], device="meta"), layout, len(kinds)).shape
                tensor = _as_out_in(sub_state[name], layout, len(kinds))
                for axis, kind in enumerate(kinds if suffix == "weight" else kinds[:1]):
                    tensor = _put_kind(tensor, axis, kind, index, full[axis], g)
                state[name] = _as_out_in(tensor, layout, len(kinds)).contiguous()
    state.update({name: tensor for name, tensor in sub_state.items() if name not in state})
    placed = type(parent_model)(copy.deepcopy(parent_model.config))
    placed.load_state_dict(state, strict=True)
    reference = next(sub_model.parameters())
    return placed.to(device=reference.device, dtype=reference.dtype).train(sub_model.training)


def _own_class_state(parent_state, prefix, blocks_state, rest, target, selection, parent) -> dict:
    """The student's state dict in the parent's own class: sliced blocks, embeddings and norms, and task heads."""
    target_state = target.state_dict()
    new_prefix = _base_prefix(target)
    state = {f"{new_prefix}{k}": v for k, v in blocks_state.items()}
    for name, tensor in rest.items():
        if f"{new_prefix}{name}" not in target_state:
            continue  # a factorised embedding's projection, which the candidate lacks when its width is H
        state[f"{new_prefix}{name}"] = _slice_generic(
            name, tensor, target_state[f"{new_prefix}{name}"].shape, selection.hidden, parent.hidden
        )
    for name, tensor in parent_state.items():  # task heads outside the base model (classifier, LM head)
        if not name.startswith(prefix) and name in target_state:
            state[name] = _slice_generic(name, tensor, target_state[name].shape, selection.hidden, parent.hidden)
    return state


def _bort_state(parent_state, prefix, blocks_state, rest, target, selection, parent, config, renames) -> dict:
    """The Bort student's state dict: BERT names renamed (token type 0 folded into the positions, RoBERTa's offset
    rows dropped, no pooler) and the task head carried over through `renames`."""
    target_state = target.state_dict()
    bort_prefix = _base_prefix(target)
    shapes = {k.removeprefix(bort_prefix): v.shape for k, v in target_state.items()}
    offset = config_shape(config, parent).position_offset
    sliced = {}
    for name, tensor in rest.items():
        if name == "embeddings.position_embeddings.weight":
            tensor = tensor[offset:]
        target_shape = shapes.get(name) or torch.Size(
            len(selection.hidden) if size == parent.hidden else size for size in tensor.shape
        )  # token types and the pooler, which Bort does not have under these names
        sliced[name] = _slice_generic(name, tensor, target_shape, selection.hidden, parent.hidden)
    base = {k.removeprefix("bort."): v for k, v in bert_state_dict_to_bort({**sliced, **blocks_state}, "").items()}
    state = {f"{bort_prefix}{k}": v for k, v in base.items()}
    heads = {k: v for k, v in parent_state.items() if prefix and not k.startswith(prefix)}  # classifier, LM head
    heads.update({k[len(prefix) :]: v for k, v in parent_state.items() if k.startswith(f"{prefix}pooler.")})
    for name, tensor in heads.items():
        new = _bort_head_name(name, renames)
        if new is not None and new in target_state:
            state[new] = _slice_generic(name, tensor, target_state[new].shape, selection.hidden, parent.hidden)
    if "lm_head.decoder.weight" in target_state:  # tied to the word embeddings
        state["lm_head.decoder.weight"] = state[f"{bort_prefix}embeddings.word_embeddings.weight"]
    return state


__all__ = [
    "IMPORTANCE_METHODS",
    "ImportanceScores",
    "compute_importance",
    "extract_subnetwork",
    "layer_allocation",
    "place_subnetwork",
    "spread_by_importance",
]
