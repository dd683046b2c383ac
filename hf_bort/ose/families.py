"""Every model family OSE reads, as data: one `FamilySpec` row per `model_type`.

A row says how the family is built, for two readers:

* the closed-form costs (`costs.py`): pooler, norms, biases, gated FFN, factorised embeddings, shared layers, ...;
* extraction and importance (`extract.py`): a `WeightLayout`, i.e. which modules of the base model hold the blocks,
  and for every weight of a block what each of its axes indexes (the residual stream, FFN neurons, query / key /
  value / output head dimensions, or a fused Q|K|V). Genuinely different mechanics (GPT-2's `Conv1D` that stores
  weights transposed, a fused QKV projection, ALBERT's shared layer groups, grouped-query attention, rotary
  positions that pin `head_dim`) are flags and axis kinds here, each handled once in `extract.py`.

Adding a family is adding a row here (and one tiny config to `tests/test_ose_families.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


# What an axis of a block weight indexes. "q" / "k" / "v": rows of the query / key / value projections (heads x
# head_dim; key and value have the key-value heads under grouped-query attention); "o": the input columns of the
# attention output projection (the concatenated heads); "qkv": a fused projection holding q, k and v in that order.
AXIS_KINDS = ("hidden", "neuron", "q", "k", "v", "o", "qkv")
HEAD_WIDTHS = ("tied", "free", "fixed")


@dataclass(frozen=True)
class WeightLayout:
    """Where a family's weights live in its base model (`model.base_model`) and what each weight's axes index.

    `modules` maps a module inside one block to the kinds of its weight's axes in (out, in) order; its bias, when
    there is one, follows the out axis. Norms have one axis. A module missing from a checkpoint (e.g. DeBERTa's
    `pos_key_proj` when `share_att_key`) is skipped; a block weight no entry covers is an error.
    """

    blocks: str  # the ModuleList of blocks (transformer layers, or ALBERT's layer groups)
    modules: dict[str, tuple[str, ...]]
    query: str  # the module whose output holds the queries (its "q" rows, or the q part of a fused "qkv")
    attention_output: str  # its input is the concatenated heads
    ffn_output: str  # its input is the FFN neurons
    hidden_outputs: tuple[str, ...]  # modules outside the blocks whose output is the residual stream
    inner: str | None = None  # ALBERT: each group holds its layers in this ModuleList
    transposed: bool = False  # GPT-2's Conv1D stores weights as (in, out)
    # Modules whose name starts with this form the attention sub-layer, the rest the FFN: what a layer that skips
    # one of them (0 heads or 0 neurons, per-layer students) leaves out. None: sub-layers cannot be skipped.
    attention_prefix: str | None = None

    def sublayer(self, module: str) -> str:
        """ "attention" or "mlp": the sub-layer a module of the block belongs to."""
        return "attention" if self.attention_prefix and module.startswith(self.attention_prefix) else "mlp"

    def __post_init__(self):
        for module, kinds in self.modules.items():
            if not 1 <= len(kinds) <= 2 or any(kind not in AXIS_KINDS for kind in kinds):
                raise ValueError(
                    f"WeightLayout module {module!r} has axis kinds {kinds}; give one or two (out, in) of {AXIS_KINDS}."
                )
        for role in ("query", "attention_output", "ffn_output"):
            if getattr(self, role) not in self.modules:
                raise ValueError(f"WeightLayout.{role}={getattr(self, role)!r} is not one of its modules.")


@dataclass(frozen=True)
class FamilySpec:
    """How one model family is built: structural facts for the costs, and its weight layout for extraction.

    Boolean facts given as a string are read from the config under that name (e.g. Llama's `attention_bias`).
    """

    intermediate_multiple: int | None = None  # I = multiple * H when the config leaves it None (GPT-2's n_inner)
    token_types: bool = True  # reads `type_vocab_size`
    learned_positions: bool | str = True
    positions: str = "absolute"  # "absolute" | "relative" (DeBERTa tables) | "rotary" (keeps head_dim)
    embedding_norm: str = "layer"  # "layer" | "none"
    layer_norm: str = "layer"  # "layer" (weight + bias) | "rms" (weight only), two per block
    final_norm: str = "none"
    pooler: bool = False
    qkv_bias: bool | str = True
    out_bias: bool | str = True
    mlp_bias: bool | str = True
    gated_mlp: bool = False
    factorized_embeddings: str = (
        "none"  # "none" | "always" (ALBERT) | "if_different" (ELECTRA) | "if_different_nobias"
    )
    shared_layers: bool = False  # ALBERT: num_hidden_groups x inner_group_num blocks hold all the weights
    has_head_dim_field: bool = False  # the config has a `head_dim` to keep in sync with H / A
    has_kv_heads: bool = False  # grouped-query attention: reads `num_key_value_heads`
    # How wide a candidate's heads are: "tied" (hidden / heads, the config cannot say otherwise), "free" (any width up
    # to the parent's, independent of the hidden size: the student is a Bort where the parent's class cannot hold it),
    # or "fixed" (the parent's: rotary tables are built for it).
    head_width: str = "tied"
    per_layer: bool = False  # students may differ per layer (heads, FFN width): built as heterogeneous Bort models
    position_offset: bool = False  # positions are numbered from padding_idx + 1 (RoBERTa), not from 0
    layout: WeightLayout | None = field(default=None, compare=False)  # None: costs only, no extraction

    def __post_init__(self):
        if self.head_width not in HEAD_WIDTHS:
            raise ValueError(f"FamilySpec.head_width must be one of {HEAD_WIDTHS}, got {self.head_width!r}.")


_BERT_LAYOUT = WeightLayout(
    blocks="encoder.layer",
    modules={
        "attention.self.query": ("q", "hidden"),
        "attention.self.key": ("k", "hidden"),
        "attention.self.value": ("v", "hidden"),
        "attention.output.dense": ("hidden", "o"),
        "attention.output.LayerNorm": ("hidden",),
        "intermediate.dense": ("neuron", "hidden"),
        "output.dense": ("hidden", "neuron"),
        "output.LayerNorm": ("hidden",),
    },
    query="attention.self.query",
    attention_output="attention.output.dense",
    ffn_output="output.dense",
    hidden_outputs=("embeddings",),
    attention_prefix="attention.",
)
_LLAMA_LAYOUT = WeightLayout(
    blocks="layers",
    modules={
        "self_attn.q_proj": ("q", "hidden"),
        "self_attn.k_proj": ("k", "hidden"),
        "self_attn.v_proj": ("v", "hidden"),
        "self_attn.o_proj": ("hidden", "o"),
        "mlp.gate_proj": ("neuron", "hidden"),
        "mlp.up_proj": ("neuron", "hidden"),
        "mlp.down_proj": ("hidden", "neuron"),
        "input_layernorm": ("hidden",),
        "post_attention_layernorm": ("hidden",),
    },
    query="self_attn.q_proj",
    attention_output="self_attn.o_proj",
    ffn_output="mlp.down_proj",
    hidden_outputs=("embed_tokens", "norm"),
)

# BERT-layout encoders: any structured subnetwork of them is a Bort model (`hf_bort.convert`), so heads keep their
# width whatever the hidden size, and layers may differ.
_BERT = FamilySpec(pooler=True, head_width="free", per_layer=True, layout=_BERT_LAYOUT)
_LLAMA = FamilySpec(
    token_types=False,
    learned_positions=False,
    positions="rotary",
    embedding_norm="none",
    layer_norm="rms",
    final_norm="rms",
    qkv_bias="attention_bias",
    out_bias="attention_bias",
    mlp_bias="mlp_bias",
    gated_mlp=True,
    has_head_dim_field=True,
    has_kv_heads=True,
    head_width="fixed",
    layout=_LLAMA_LAYOUT,
)

FAMILIES: dict[str, FamilySpec] = {
    "bert": _BERT,
    "roberta": replace(_BERT, position_offset=True),
    "xlm-roberta": replace(_BERT, position_offset=True),
    "camembert": replace(_BERT, position_offset=True),
    "bort": replace(_BERT, pooler=False, token_types=False, has_head_dim_field=True),
    "electra": FamilySpec(
        factorized_embeddings="if_different",
        layout=replace(_BERT_LAYOUT, hidden_outputs=("embeddings", "embeddings_project")),
    ),
    "distilbert": FamilySpec(
        token_types=False,
        layout=WeightLayout(
            blocks="transformer.layer",
            modules={
                "attention.q_lin": ("q", "hidden"),
                "attention.k_lin": ("k", "hidden"),
                "attention.v_lin": ("v", "hidden"),
                "attention.out_lin": ("hidden", "o"),
                "sa_layer_norm": ("hidden",),
                "ffn.lin1": ("neuron", "hidden"),
                "ffn.lin2": ("hidden", "neuron"),
                "output_layer_norm": ("hidden",),
            },
            query="attention.q_lin",
            attention_output="attention.out_lin",
            ffn_output="ffn.lin2",
            hidden_outputs=("embeddings",),
        ),
    ),
    "albert": FamilySpec(
        pooler=True,
        factorized_embeddings="always",
        shared_layers=True,
        layout=WeightLayout(
            blocks="encoder.albert_layer_groups",
            inner="albert_layers",
            modules={
                "attention.query": ("q", "hidden"),
                "attention.key": ("k", "hidden"),
                "attention.value": ("v", "hidden"),
                "attention.dense": ("hidden", "o"),
                "attention.LayerNorm": ("hidden",),
                "ffn": ("neuron", "hidden"),
                "ffn_output": ("hidden", "neuron"),
                "full_layer_layer_norm": ("hidden",),
            },
            query="attention.query",
            attention_output="attention.dense",
            ffn_output="ffn_output",
            hidden_outputs=("encoder.embedding_hidden_mapping_in",),
        ),
    ),
    "deberta-v2": FamilySpec(
        learned_positions="position_biased_input",
        positions="relative",
        factorized_embeddings="if_different_nobias",
        layout=replace(
            _BERT_LAYOUT,
            modules={
                "attention.self.query_proj": ("q", "hidden"),
                "attention.self.key_proj": ("k", "hidden"),
                "attention.self.value_proj": ("v", "hidden"),
                "attention.self.pos_query_proj": ("q", "hidden"),  # only without share_att_key
                "attention.self.pos_key_proj": ("k", "hidden"),
                **{k: v for k, v in _BERT_LAYOUT.modules.items() if not k.startswith("attention.self.")},
            },
            query="attention.self.query_proj",
        ),
    ),
    "gpt2": FamilySpec(
        intermediate_multiple=4,
        token_types=False,
        embedding_norm="none",
        final_norm="layer",
        layout=WeightLayout(
            blocks="h",
            modules={
                "ln_1": ("hidden",),
                "attn.c_attn": ("qkv", "hidden"),
                "attn.c_proj": ("hidden", "o"),
                "ln_2": ("hidden",),
                "mlp.c_fc": ("neuron", "hidden"),
                "mlp.c_proj": ("hidden", "neuron"),
            },
            query="attn.c_attn",
            attention_output="attn.c_proj",
            ffn_output="mlp.c_proj",
            hidden_outputs=("wte", "wpe", "ln_f"),
            transposed=True,
        ),
    ),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": replace(_LLAMA, qkv_bias=True, out_bias=False, mlp_bias=False),
}

HOW_TO_ADD_A_FAMILY = (
    "To add one, add a FamilySpec row with its WeightLayout to FAMILIES in hf_bort/ose/families.py and a tiny "
    "config row to tests/test_ose_families.py."
)


def extractable_families() -> list[str]:
    """The model types whose weights OSE can extract (a row with a `WeightLayout`)."""
    return sorted(name for name, spec in FAMILIES.items() if spec.layout is not None)


def family_layout(model_type: str) -> tuple[FamilySpec, WeightLayout]:
    """The family row and its weight layout, or a ValueError that lists the supported families."""
    spec = FAMILIES.get(model_type)
    if spec is None or spec.layout is None:
        raise ValueError(
            f"OSE cannot extract weights from model_type {model_type!r}: supported families are "
            f"{', '.join(extractable_families())}. {HOW_TO_ADD_A_FAMILY}"
        )
    return spec, spec.layout


__all__ = [
    "AXIS_KINDS",
    "HEAD_WIDTHS",
    "FAMILIES",
    "FamilySpec",
    "HOW_TO_ADD_A_FAMILY",
    "WeightLayout",
    "extractable_families",
    "family_layout",
]
