# Copyright 2026 The hf_bort developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
"""Bort model configuration.

The defaults are the released Bort (de Wynter & Perry, 2020): the optimal subarchitecture
<depth 4, heads 8, hidden 1024, intermediate 768> of RoBERTa-large, with RoBERTa's 50,265-token
BPE vocabulary and no token-type embeddings.

Layers may differ: transformers' `per_layer_config` (the heterogeneity convention of `PreTrainedConfig`) overrides
`num_attention_heads`, `head_dim` and `intermediate_size` per layer, and `skip` drops a layer's "attention" or "mlp"
sub-layer, so every structured subnetwork (fewer heads at the parent's head width, a different FFN width in each
layer) is a Bort model that saves and loads like any other.
"""

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


# What `per_layer_config` may change in one layer, and the sub-layers `skip` may drop. The residual stream (hidden
# size), the vocabulary and the norms are shared by every layer.
PER_LAYER_ATTRIBUTES = ("num_attention_heads", "head_dim", "intermediate_size", "skip")
SKIPPABLE_SUBLAYERS = ("attention", "mlp")


@strict
class BortConfig(PreTrainedConfig):
    r"""
    Configuration of a [`BortModel`]. Defaults reproduce the released Bort checkpoint's shape.

    Args:
        vocab_size: size of the token vocabulary (RoBERTa's BPE by default).
        hidden_size: width of the residual stream H.
        num_hidden_layers: depth D.
        num_attention_heads: attention heads A per layer.
        intermediate_size: width I of the feed-forward layer.
        head_dim: width of one attention head. `None` means `hidden_size // num_attention_heads`; set it
            explicitly for subnetworks whose heads were pruned, where `heads * head_dim != hidden_size`.
        hidden_act: feed-forward non-linearity, any name in `transformers.activations.ACT2FN`.
        hidden_dropout_prob / attention_probs_dropout_prob / classifier_dropout: dropout rates in [0, 1).
        max_position_embeddings: longest sequence the position table holds.
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: std of the truncated-normal initialiser.
        per_layer_config: optional `{layer: {attribute: value}}` overrides of `num_attention_heads`, `head_dim` and
            `intermediate_size`, and `skip` (a list of "attention" / "mlp") to drop a sub-layer; read by the model
            as `config.per_layer_config[i]`.

    Example:

    ```python
    >>> from transformers import AutoConfig, AutoModel
    >>> import hf_bort  # registers "bort" with the Auto classes
    >>> model = AutoModel.from_config(AutoConfig.for_model("bort"))
    >>> pruned = AutoModel.from_config(
    ...     AutoConfig.for_model("bort", per_layer_config={0: {"num_attention_heads": 2}, 3: {"skip": ["mlp"]}})
    ... )
    ```
    """

    model_type = "bort"

    vocab_size: int = 50265
    hidden_size: int = 1024
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    intermediate_size: int = 768
    head_dim: int | None = None
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    classifier_dropout: float | int | None = None
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        if self.head_dim is None and self.num_attention_heads and self.num_attention_heads > 0:
            if self.hidden_size % self.num_attention_heads == 0:
                self.head_dim = self.hidden_size // self.num_attention_heads
        # Raise a plain ValueError at construction; `@strict` runs the same checks again on `validate()`.
        _check_per_layer_overrides(kwargs.get("per_layer_config"))
        self.validate_architecture()
        super().__post_init__(**kwargs)  # applies per_layer_config last
        if self.is_heterogeneous:
            self.validate_architecture()  # now layer by layer

    def validate_architecture(self):
        """Every size positive, dropouts in [0, 1), heads compatible with hidden, in every layer: a ValueError naming
        the fix."""
        if self.is_heterogeneous:
            for index, layer in enumerate(self.per_layer_config):
                _check_layer(layer, f"BortConfig.per_layer_config[{index}].")
        else:
            _check_layer(self, "BortConfig.")
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "max_position_embeddings"):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(
                    f"BortConfig.{name} must be a positive integer, got {value}. Pass {name}=<n> with n >= 1."
                )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"BortConfig.{name} must lie in [0, 1), got {value}. Pass a rate such as 0.1.")
        if not (math.isfinite(self.layer_norm_eps) and self.layer_norm_eps > 0):
            raise ValueError(
                f"BortConfig.layer_norm_eps must be a positive finite number, got {self.layer_norm_eps}. "
                "Pass a small value such as 1e-5."
            )
        from transformers.activations import ACT2FN  # here, not at import: it loads torch (import hf_bort stays light)

        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"BortConfig.hidden_act {self.hidden_act!r} is not a known activation. Pass one of "
                f"transformers.activations.ACT2FN: {', '.join(sorted(ACT2FN))}."
            )


def _check_per_layer_overrides(per_layer_config) -> None:
    """Only the attributes a Bort layer can vary, and only the sub-layers it can drop (transformers checks the
    layer indices)."""
    if not per_layer_config:
        return
    if not isinstance(per_layer_config, dict):
        raise ValueError(
            f"BortConfig.per_layer_config must be a dict {{layer: {{attribute: value}}}}, got "
            f"{type(per_layer_config).__name__}."
        )
    for index, overrides in per_layer_config.items():
        if not isinstance(overrides, dict):
            raise ValueError(f"BortConfig.per_layer_config[{index}] must be a dict of overrides, got {overrides!r}.")
        unknown = sorted(set(overrides) - set(PER_LAYER_ATTRIBUTES))
        if unknown:
            raise ValueError(
                f"BortConfig.per_layer_config[{index}] sets {unknown}, which a Bort layer cannot vary; per layer "
                f"it takes {', '.join(PER_LAYER_ATTRIBUTES)} (hidden_size and the rest are shared by all layers)."
            )
        skip = overrides.get("skip", [])
        bad = [] if isinstance(skip, (list, tuple, set)) else [skip]
        bad += [part for part in (skip if not bad else []) if part not in SKIPPABLE_SUBLAYERS]
        if bad:
            raise ValueError(
                f"BortConfig.per_layer_config[{index}]['skip'] holds {bad}; a Bort layer can skip "
                f"{' and/or '.join(repr(s) for s in SKIPPABLE_SUBLAYERS)}, given as a list."
            )


def _check_layer(layer, where: str) -> None:
    """The sizes of one layer (or of the uniform config): heads, head width and FFN width that build a layer."""
    skip = set(getattr(layer, "skip", None) or ())
    sizes = [] if "mlp" in skip else ["intermediate_size"]
    if "attention" not in skip:
        sizes.append("num_attention_heads")
    for name in sizes:
        value = getattr(layer, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{where}{name} must be a positive integer, got {value}. Pass {name}=<n> with n >= 1.")
    if "attention" in skip:
        return
    if layer.head_dim is None:
        raise ValueError(
            f"{where}hidden_size ({layer.hidden_size}) is not divisible by num_attention_heads "
            f"({layer.num_attention_heads}). Choose heads that divide hidden_size, or pass head_dim=<n> explicitly."
        )
    if isinstance(layer.head_dim, bool) or not isinstance(layer.head_dim, int) or layer.head_dim <= 0:
        raise ValueError(f"{where}head_dim must be a positive integer, got {layer.head_dim}.")


# Every Auto class Bort registers with, as `auto_map` entries: a checkpoint saved from any head then loads with any
# Auto class under trust_remote_code. `hf_bort.registration` registers the same map (the one place it is written).
BORT_AUTO_MAP = {
    "AutoConfig": "configuration_bort.BortConfig",
    "AutoModel": "modeling_bort.BortModel",
    "AutoModelForMaskedLM": "modeling_bort.BortForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_bort.BortForSequenceClassification",
    "AutoModelForMultipleChoice": "modeling_bort.BortForMultipleChoice",
    "AutoModelForTokenClassification": "modeling_bort.BortForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_bort.BortForQuestionAnswering",
}


__all__ = ["BORT_AUTO_MAP", "BortConfig"]
