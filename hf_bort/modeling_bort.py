# Copyright 2026 The hf_bort developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
"""PyTorch Bort model.

Bort is a BERT-style post-LayerNorm encoder with no token-type embeddings. The module names follow
`transformers.BertModel` (`embeddings`, `encoder.layer.N.attention.self.query`, ...) so BERT-format
checkpoints such as `amazon/bort` convert by renaming, and OSE extraction slices Bort and BERT alike.

This file imports only from `transformers`, `torch` and its sibling `configuration_bort.py`: it is copied
next to saved checkpoints so they load with `trust_remote_code=True` where `hf_bort` is not installed.
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, logging
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_bort import BORT_AUTO_MAP, BortConfig


logger = logging.get_logger(__name__)


def _is_tracing() -> bool:
    """True under torch.compile, torch.export/ONNX and jit tracing, where data-dependent checks cannot run."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _layer_config(config: BortConfig, layer_idx: int | None) -> BortConfig:
    """One layer's view of the config: its `per_layer_config` overrides applied (the config itself when every layer is
    alike). Modules keep the global config for what is set after construction, such as the attention implementation."""
    if layer_idx is None or not config.is_heterogeneous:
        return config
    return config.per_layer_config[layer_idx]


def _check_labels(labels: torch.Tensor, name: str, shape: tuple[int, ...], num_classes: int | None = None) -> None:
    """Labels of the wrong count, or class ids outside [0, num_classes) other than the ignored -100, fail here with
    a message instead of an IndexError, a device assert or a silent broadcast inside the loss."""
    if _is_tracing():
        return
    if labels.numel() != math.prod(shape):
        raise ValueError(
            f"{name} has {labels.numel()} values (shape {tuple(labels.shape)}) but this batch needs {math.prod(shape)} "
            f"(shape {shape}); pass one label per {'token' if len(shape) > 1 else 'example'}."
        )
    if num_classes is None:
        return
    if labels.is_floating_point():
        raise ValueError(f"{name} must be integer class ids in [0, {num_classes}), got dtype {labels.dtype}.")
    outside = labels[(labels != -100) & ((labels < 0) | (labels >= num_classes))]
    if outside.numel():
        raise ValueError(
            f"{name} contains {int(outside[0])}, outside [0, {num_classes}) (-100 marks an ignored position); "
            "check the label mapping against config.num_labels / the vocabulary."
        )


def _cross_entropy_over_labelled(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean cross-entropy over the positions whose label is not -100.

    When every label is -100 (random masking can leave a short batch with nothing masked), torch's mean is NaN, which
    would poison the weights at the next step; here the loss is 0 with zero gradients, and a warning says why.
    """
    labels = labels.reshape(-1)
    total = CrossEntropyLoss(reduction="sum")(logits.reshape(-1, num_classes), labels)
    labelled = (labels != -100).sum()
    if not _is_tracing() and int(labelled) == 0:
        logger.warning_once("Every label in this batch is -100 (ignored), so its loss is 0 rather than NaN.")
    return total / labelled.clamp(min=1)


class BortEmbeddings(nn.Module):
    """Word and absolute position embeddings (no token types), then LayerNorm and dropout."""

    def __init__(self, config: BortConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_ids = nn.Buffer(torch.arange(config.max_position_embeddings).expand((1, -1)), persistent=False)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        seq_length = input_ids.shape[1] if input_ids is not None else inputs_embeds.shape[1]
        if position_ids is None:
            position_ids = self.position_ids[:, :seq_length]
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value)
    attn_output = attn_output.transpose(1, 2).contiguous()
    return attn_output, attn_weights


class BortSelfAttention(nn.Module):
    def __init__(self, config: BortConfig, layer_idx: int | None = None):
        super().__init__()
        self.config = config
        layer = _layer_config(config, layer_idx)
        self.num_attention_heads = layer.num_attention_heads
        self.attention_head_size = layer.head_dim
        self.all_head_size = layer.num_attention_heads * layer.head_dim
        self.scaling = self.attention_head_size**-0.5
        self.is_causal = False
        self.layer_idx = layer_idx

        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.attention_head_size)
        query_layer = self.query(hidden_states).view(hidden_shape).transpose(1, 2)
        key_layer = self.key(hidden_states).view(hidden_shape).transpose(1, 2)
        value_layer = self.value(hidden_states).view(hidden_shape).transpose(1, 2)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query_layer,
            key_layer,
            value_layer,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout.p,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()
        return attn_output, attn_weights


class BortSelfOutput(nn.Module):
    def __init__(self, config: BortConfig, layer_idx: int | None = None):
        super().__init__()
        layer = _layer_config(config, layer_idx)
        self.dense = nn.Linear(layer.num_attention_heads * layer.head_dim, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class BortAttention(nn.Module):
    def __init__(self, config: BortConfig, layer_idx: int | None = None):
        super().__init__()
        self.self = BortSelfAttention(config, layer_idx=layer_idx)
        self.output = BortSelfOutput(config, layer_idx=layer_idx)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, attn_weights = self.self(hidden_states, attention_mask=attention_mask, **kwargs)
        return self.output(attention_output, hidden_states), attn_weights


class BortIntermediate(nn.Module):
    def __init__(self, config: BortConfig, layer_idx: int | None = None):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, _layer_config(config, layer_idx).intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BortOutput(nn.Module):
    def __init__(self, config: BortConfig, layer_idx: int | None = None):
        super().__init__()
        self.dense = nn.Linear(_layer_config(config, layer_idx).intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.dense(hidden_states))
        return self.LayerNorm(hidden_states + input_tensor)


class BortLayer(GradientCheckpointingLayer):
    """A post-LayerNorm block. A sub-layer named in this layer's `skip` ("attention" or "mlp") is absent: the hidden
    states pass it unchanged, and it has no weights."""

    def __init__(self, config: BortConfig, layer_idx: int | None = None):
        super().__init__()
        skip = set(getattr(_layer_config(config, layer_idx), "skip", None) or ())
        self.attention = None if "attention" in skip else BortAttention(config, layer_idx=layer_idx)
        mlp = "mlp" not in skip
        self.intermediate = BortIntermediate(config, layer_idx=layer_idx) if mlp else None
        self.output = BortOutput(config, layer_idx=layer_idx) if mlp else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        if self.attention is not None:
            hidden_states, _ = self.attention(hidden_states, attention_mask, **kwargs)
        if self.output is None:
            return hidden_states
        return self.output(self.intermediate(hidden_states), hidden_states)


class BortEncoder(nn.Module):
    def __init__(self, config: BortConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([BortLayer(config, layer_idx=i) for i in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class BortPreTrainedModel(PreTrainedModel):
    config_class = BortConfig
    config: BortConfig
    base_model_prefix = "bort"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BortEmbeddings", "BortLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {
        "hidden_states": BortLayer,
        "attentions": BortSelfAttention,
    }

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as transformers does; when registered for the Auto classes, map all of them in `auto_map`."""
        if self.is_remote_code():  # registered for an Auto class, so transformers will save the code beside
            self.config.auto_map = dict(BORT_AUTO_MAP)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation through `transformers.initialization`, which skips weights loaded from a checkpoint."""
        super()._init_weights(module)
        if isinstance(module, BortEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))


class BortModel(BortPreTrainedModel):
    """The bare Bort encoder: embeddings and `num_hidden_layers` post-LayerNorm transformer layers, no pooler."""

    def __init__(self, config: BortConfig):
        super().__init__(config)
        self.config = config
        self.gradient_checkpointing = False
        self.embeddings = BortEmbeddings(config)
        self.encoder = BortEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def _check_inputs(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        position_ids: torch.Tensor | None = None,
    ) -> None:
        """Turn out-of-range ids and positions, empty or over-long sequences, float ids, mis-sized embeddings and
        mis-shaped masks into errors that name the fix, instead of a reshape error or NaNs deep inside the model."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if input_ids is not None and (input_ids.is_floating_point() or input_ids.is_complex()):
            raise ValueError(
                f"input_ids must hold integer token ids (torch.long), got dtype {input_ids.dtype}. Pass the ids the "
                "tokenizer returned, or use `inputs_embeds` for continuous inputs."
            )
        if inputs_embeds is not None and (
            inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size
        ):
            raise ValueError(
                f"inputs_embeds must have shape (batch, sequence, hidden_size={self.config.hidden_size}); got "
                f"{tuple(inputs_embeds.shape)}. Build them with model.get_input_embeddings()(input_ids)."
            )
        shape = tuple(input_ids.shape) if input_ids is not None else tuple(inputs_embeds.shape[:-1])
        if len(shape) != 2:
            raise ValueError(f"Bort expects inputs of shape (batch, sequence); got {shape}.")
        if shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"Sequence length {shape[1]} exceeds max_position_embeddings={self.config.max_position_embeddings}. "
                "Truncate the inputs (e.g. tokenizer(..., truncation=True, max_length=...))."
            )
        if attention_mask is not None and attention_mask.dim() == 2 and tuple(attention_mask.shape) != shape:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the inputs have shape {shape}; "
                "pass the mask the tokenizer returned with these input_ids."
            )
        if _is_tracing():
            return
        if 0 in shape:
            raise ValueError(
                f"The inputs are empty (shape {shape}); pass at least one sequence of at least one token "
                "(a tokenizer gives every text its special tokens)."
            )
        if attention_mask is not None:
            self._check_attention_mask(attention_mask, shape)
        if position_ids is not None:
            if position_ids.is_floating_point() or position_ids.shape[-1] != shape[1] or position_ids.dim() > 2:
                raise ValueError(
                    f"position_ids must be integers of shape (batch, sequence) or (1, sequence) matching the inputs "
                    f"{shape}; got {tuple(position_ids.shape)} ({position_ids.dtype})."
                )
        # Value checks read the tensors back to the host. On an accelerator that would synchronise every forward pass,
        # so they run on the CPU only (as cheap as the lookup itself); there the embedding gather's own device
        # assertion catches an id outside the table, as for transformers' BERT.
        if position_ids is not None and position_ids.device.type == "cpu":
            low, high = int(position_ids.min()), int(position_ids.max())
            if low < 0 or high >= self.config.max_position_embeddings:
                raise ValueError(
                    f"position_ids contain position {low if low < 0 else high}, outside the position table "
                    f"[0, {self.config.max_position_embeddings}); pass positions below max_position_embeddings, "
                    "or leave position_ids out (0..sequence-1)."
                )
        if input_ids is not None and input_ids.device.type == "cpu":
            low, high = int(input_ids.min()), int(input_ids.max())
            if low < 0 or high >= self.config.vocab_size:
                raise ValueError(
                    f"input_ids contain token id {high if high >= self.config.vocab_size else low}, outside "
                    f"[0, {self.config.vocab_size}). The tokenizer does not match this model's vocabulary "
                    f"(vocab_size={self.config.vocab_size}); use the checkpoint's own tokenizer."
                )

    def _check_attention_mask(self, attention_mask: torch.Tensor, shape: tuple[int, int]) -> None:
        """A 2-D padding mask (batch, sequence), a 3-D (batch, sequence, sequence) one, or a 4-D bool/additive float
        mask (batch or 1, heads or 1, sequence, sequence), as transformers' BERT accepts."""
        batch, length = shape
        dims = tuple(attention_mask.shape)
        if attention_mask.dim() == 3:
            valid = dims == (batch, length, length)
        elif attention_mask.dim() == 4:
            # one mask for every head, or one per head where every layer has the same head count
            heads = {layer.attention.self.num_attention_heads for layer in self.encoder.layer if layer.attention}
            per_head = tuple(heads) if len(heads) == 1 else ()
            valid = dims[0] in (1, batch) and dims[1] in (1, *per_head) and dims[2:] == (length, length)
            if valid and not (attention_mask.dtype == torch.bool or attention_mask.is_floating_point()):
                raise ValueError(
                    f"A 4-D attention_mask must be bool (True = attend) or an additive float mask; got "
                    f"{attention_mask.dtype}. Pass the 2-D 0/1 mask the tokenizer returned instead."
                )
        else:
            valid = attention_mask.dim() == 2
        if not valid:
            raise ValueError(
                f"attention_mask has shape {dims}, which does not fit inputs of shape {shape}: pass (batch, sequence), "
                "(batch, sequence, sequence) or (batch or 1, heads or 1, sequence, sequence)."
            )

    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        input_ids: token ids of shape (batch, sequence), in [0, vocab_size).
        attention_mask: 1 for tokens to attend to, 0 for padding; shape (batch, sequence).
        position_ids: optional absolute positions; defaults to 0..sequence-1.
        inputs_embeds: precomputed word embeddings instead of `input_ids`.
        """
        kwargs.pop("token_type_ids", None)  # Bort has no token types; tokenizers of BERT-format checkpoints send them.
        self._check_inputs(input_ids, attention_mask, inputs_embeds, position_ids)
        if attention_mask is not None and attention_mask.dim() == 3:  # (batch, query, key) 0/1, as BERT accepts
            attention_mask = attention_mask[:, None].bool()
        embedding_output = self.embeddings(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=embedding_output, attention_mask=attention_mask
        )
        encoder_outputs = self.encoder(embedding_output, attention_mask=attention_mask, **kwargs)
        return BaseModelOutput(last_hidden_state=encoder_outputs.last_hidden_state)


class BortLMHead(nn.Module):
    """Masked-LM head: dense + activation + LayerNorm, then a decoder tied to the input embeddings."""

    def __init__(self, config: BortConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.activation(self.dense(features))))


class BortForMaskedLM(BortPreTrainedModel):
    _tied_weights_keys = {"lm_head.decoder.weight": "bort.embeddings.word_embeddings.weight"}

    def __init__(self, config: BortConfig):
        super().__init__(config)
        self.bort = BortModel(config)
        self.lm_head = BortLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""
        labels: token ids to predict, -100 where no loss is taken (unmasked positions).
        """
        outputs = self.bort(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            _check_labels(labels, "labels", tuple(logits.shape[:-1]), self.config.vocab_size)
            loss = _cross_entropy_over_labelled(logits, labels.to(logits.device), self.config.vocab_size)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BortClassificationHead(nn.Module):
    """Bort's sentence head: dropout, dense + tanh on the first token, dropout, linear."""

    def __init__(self, config: BortConfig, num_outputs: int):
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, num_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.dropout(features[:, 0, :])
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


def _sequence_classification_loss(config: BortConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """transformers' convention: regression for one label, cross-entropy for int labels, BCE for multi-label."""
    num_labels = config.num_labels
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    batch = logits.shape[0]
    if config.problem_type == "regression":
        _check_labels(labels, "labels", (batch, num_labels))
        if num_labels == 1:
            return MSELoss()(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
        return MSELoss()(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        _check_labels(labels, "labels", (batch,), num_labels)
        return CrossEntropyLoss()(logits.view(-1, num_labels), labels.view(-1))
    if not _is_tracing() and tuple(labels.shape) != tuple(logits.shape):
        raise ValueError(
            f"Multi-label labels must be multi-hot floats of shape {tuple(logits.shape)} (batch, num_labels); got "
            f"{tuple(labels.shape)} ({labels.dtype}). For one class id per example pass integer labels."
        )
    return BCEWithLogitsLoss()(logits, labels.to(logits.dtype))


class BortForSequenceClassification(BortPreTrainedModel):
    def __init__(self, config: BortConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bort = BortModel(config)
        self.classifier = BortClassificationHead(config, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        labels: class ids (single-label), floats (regression when num_labels == 1) or multi-hot floats
            (problem_type="multi_label_classification").
        """
        outputs = self.bort(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = _sequence_classification_loss(self.config, logits, labels.to(logits.device))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BortForMultipleChoice(BortPreTrainedModel):
    def __init__(self, config: BortConfig):
        super().__init__(config)
        self.bort = BortModel(config)
        self.classifier = BortClassificationHead(config, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultipleChoiceModelOutput:
        r"""
        input_ids: shape (batch, num_choices, sequence).
        labels: index of the right choice, shape (batch,).
        """
        reference = input_ids if input_ids is not None else inputs_embeds
        expected_dims = 3 if input_ids is not None else 4
        if reference is None or reference.dim() != expected_dims:
            raise ValueError(
                "BortForMultipleChoice expects input_ids of shape (batch, num_choices, sequence) (inputs_embeds: "
                f"(batch, num_choices, sequence, hidden)); got {None if reference is None else tuple(reference.shape)}. "
                "Tokenize each (context, choice) pair and stack the choices on dimension 1."
            )
        num_choices = reference.shape[1]

        def flat(tensor: torch.Tensor | None, keep: int) -> torch.Tensor | None:
            return tensor.reshape(-1, *tensor.shape[2 : 2 + keep]) if tensor is not None else None

        outputs = self.bort(
            flat(input_ids, 1),
            attention_mask=flat(attention_mask, 1),
            position_ids=flat(position_ids, 1),
            inputs_embeds=flat(inputs_embeds, 2),
            return_dict=True,
            **kwargs,
        )
        reshaped_logits = self.classifier(outputs.last_hidden_state).view(-1, num_choices)
        loss = None
        if labels is not None:
            _check_labels(labels, "labels", (reshaped_logits.shape[0],), num_choices)
            loss = CrossEntropyLoss()(reshaped_logits, labels.to(reshaped_logits.device).view(-1))
        return MultipleChoiceModelOutput(
            loss=loss, logits=reshaped_logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BortForTokenClassification(BortPreTrainedModel):
    def __init__(self, config: BortConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bort = BortModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        r"""
        labels: a class id per token, -100 where no loss is taken.
        """
        outputs = self.bort(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            _check_labels(labels, "labels", tuple(logits.shape[:-1]), self.num_labels)
            loss = _cross_entropy_over_labelled(logits, labels.to(logits.device), self.num_labels)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BortForQuestionAnswering(BortPreTrainedModel):
    def __init__(self, config: BortConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bort = BortModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        r"""
        start_positions / end_positions: token index of the answer span's first and last token, shape (batch,).
        """
        outputs = self.bort(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(1, dim=-1)
        start_logits = start_logits.squeeze(-1).contiguous()
        end_logits = end_logits.squeeze(-1).contiguous()
        total_loss = None
        if start_positions is not None and end_positions is not None:
            # Positions outside the sequence are ignored (clamped to `ignored_index`), as in transformers' BERT.
            _check_labels(start_positions, "start_positions", (start_logits.shape[0],))
            _check_labels(end_positions, "end_positions", (end_logits.shape[0],))
            ignored_index = start_logits.size(1)
            start_positions = start_positions.clamp(0, ignored_index).to(start_logits.device)
            end_positions = end_positions.clamp(0, ignored_index).to(end_logits.device)
            loss_fct = CrossEntropyLoss(ignore_index=ignored_index)
            total_loss = (loss_fct(start_logits, start_positions) + loss_fct(end_logits, end_positions)) / 2
        return QuestionAnsweringModelOutput(
            loss=total_loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = [
    "BortForMaskedLM",
    "BortForMultipleChoice",
    "BortForQuestionAnswering",
    "BortForSequenceClassification",
    "BortForTokenClassification",
    "BortModel",
    "BortPreTrainedModel",
]
