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
"""

import math

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


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

    Example:

    ```python
    >>> from transformers import AutoConfig, AutoModel
    >>> import hf_bort  # registers "bort" with the Auto classes
    >>> model = AutoModel.from_config(AutoConfig.for_model("bort"))
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
        # Raise a plain ValueError at construction; `@strict` runs the same check again on `validate()`.
        self.validate_architecture()
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Every size positive, dropouts in [0, 1), heads compatible with hidden: a ValueError naming the fix."""
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(
                    f"BortConfig.{name} must be a positive integer, got {value}. Pass {name}=<n> with n >= 1."
                )
        if self.head_dim is None:
            raise ValueError(
                f"BortConfig.hidden_size ({self.hidden_size}) is not divisible by num_attention_heads "
                f"({self.num_attention_heads}). Choose heads that divide hidden_size, or pass head_dim=<n> explicitly."
            )
        if self.head_dim <= 0:
            raise ValueError(f"BortConfig.head_dim must be a positive integer, got {self.head_dim}.")
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

    @property
    def attention_width(self) -> int:
        """Total width of the attention projections (heads x head size); equals hidden_size unless heads were pruned."""
        return self.num_attention_heads * self.head_dim


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
