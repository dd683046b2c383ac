"""Conversion of BERT-format checkpoints (such as the published `amazon/bort`) into `BortForMaskedLM`.

`amazon/bort` is stored as a `BertForMaskedLM` with `type_vocab_size=1`. Bort has no token types, so the
single token-type row, which BERT adds to every position, is folded into the position table: the
converted model's hidden states equal BERT's exactly (up to float rounding) for all-zero token types.
"""

import os
import warnings
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForMaskedLM, BertPreTrainedModel
from transformers.utils import logging

from .configuration_bort import BortConfig
from .errors import check_model_source, readable_weights
from .modeling_bort import BortForMaskedLM


logger = logging.get_logger(__name__)

UNTRAINED_HEAD_WARNING = (
    "The masked-LM head is copied from the source as is. The MLM head of the published `amazon/bort` checkpoint "
    "was never trained, so its token predictions are meaningless: use the encoder for fine-tuning, or train the "
    "head (e.g. with hf_bort's distillation recipe) before relying on masked-LM outputs."
)
NO_HEAD_WARNING = (
    "The source has no masked-LM head (e.g. a bare BertModel checkpoint), so none was copied: Bort's head is "
    "initialised at random. Use the encoder for fine-tuning, or train the head (e.g. with hf_bort's distillation "
    "recipe) before relying on masked-LM outputs."
)


def bort_config_from_bert(bert_config: BertConfig, **overrides) -> BortConfig:
    """The Bort config with the same dimensions as a BERT config; `overrides` (e.g. a pruned model's
    `num_hidden_layers` and `per_layer_config`) replace what they name."""
    settings = dict(
        vocab_size=bert_config.vocab_size,
        hidden_size=bert_config.hidden_size,
        num_hidden_layers=bert_config.num_hidden_layers,
        num_attention_heads=bert_config.num_attention_heads,
        intermediate_size=bert_config.intermediate_size,
        hidden_act=bert_config.hidden_act,
        hidden_dropout_prob=bert_config.hidden_dropout_prob,
        attention_probs_dropout_prob=bert_config.attention_probs_dropout_prob,
        classifier_dropout=bert_config.classifier_dropout,
        max_position_embeddings=bert_config.max_position_embeddings,
        initializer_range=bert_config.initializer_range,
        layer_norm_eps=bert_config.layer_norm_eps,
        pad_token_id=bert_config.pad_token_id,
        bos_token_id=bert_config.bos_token_id,
        eos_token_id=bert_config.eos_token_id,
    )
    return BortConfig(**{**settings, **overrides})


# BERT's pooler (dense + tanh on the first token) and classifier compute exactly Bort's classification head. Names as
# a BertForSequenceClassification holds them, the pooler's without its base model's prefix ("bert.").
BERT_CLASSIFIER_TO_BORT = {
    f"{bert}.{suffix}": f"{bort}.{suffix}"
    for bert, bort in (("pooler.dense", "classifier.dense"), ("classifier", "classifier.out_proj"))
    for suffix in ("weight", "bias")
}


def bert_state_dict_to_bort(bert_state: dict[str, torch.Tensor], prefix: str = "bert.") -> dict[str, torch.Tensor]:
    """Rename a BERT encoder (+ optional MLM head) state dict to Bort's names, folding token type 0 into positions."""
    bort_state: dict[str, torch.Tensor] = {}
    token_types = bert_state.get(f"{prefix}embeddings.token_type_embeddings.weight")
    for name, tensor in bert_state.items():
        if name.startswith(prefix):
            short = name[len(prefix) :]
            if short.startswith("pooler.") or short.startswith("embeddings.token_type") or short.endswith("_ids"):
                continue
            if short == "embeddings.position_embeddings.weight" and token_types is not None:
                tensor = tensor + token_types[0]
            bort_state[f"bort.{short}"] = tensor
        elif name.startswith("cls.predictions."):
            head = {
                "cls.predictions.transform.dense.weight": "lm_head.dense.weight",
                "cls.predictions.transform.dense.bias": "lm_head.dense.bias",
                "cls.predictions.transform.LayerNorm.weight": "lm_head.layer_norm.weight",
                "cls.predictions.transform.LayerNorm.bias": "lm_head.layer_norm.bias",
                "cls.predictions.bias": "lm_head.decoder.bias",
            }.get(name)
            if head is not None:
                bort_state[head] = tensor
    return bort_state


def convert_bert_checkpoint(
    source: str | os.PathLike | BertPreTrainedModel,
    save_directory: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> BortForMaskedLM:
    """Convert a BERT-format masked-LM checkpoint (Hub id, local folder or loaded model) to `BortForMaskedLM`.

    With `save_directory`, the converted model (and the source's tokenizer, when there is one) is saved
    there; an existing non-empty folder is only replaced with `overwrite=True`.
    """
    if save_directory is not None:
        target = Path(save_directory)
        if target.exists() and not target.is_dir():
            raise FileExistsError(
                f"{target} is a file, not a folder; choose a folder to write the Bort checkpoint to."
            )
        if target.exists() and any(target.iterdir()) and not overwrite:
            raise FileExistsError(
                f"{target} already exists and is not empty; pass overwrite=True (or --overwrite) to replace it, "
                "or choose another folder."
            )
    if not isinstance(source, BertPreTrainedModel):
        check_model_source(source, "source")
    config = source.config if isinstance(source, BertPreTrainedModel) else AutoConfig.from_pretrained(source)
    if not isinstance(config, BertConfig):
        raise ValueError(
            f"convert_bert_checkpoint expects a BERT-format checkpoint (model_type 'bert'); {source} has "
            f"model_type {config.model_type!r}. A Bort checkpoint needs no conversion: load it with AutoModel."
        )
    head_in_source = True
    if isinstance(source, BertPreTrainedModel):
        bert = source
    else:
        with readable_weights(source, "source"):
            bert, loading_info = BertForMaskedLM.from_pretrained(source, output_loading_info=True)
        # A bare BertModel checkpoint loads into BertForMaskedLM with a random head: that head is not the source's.
        head_in_source = not any(key.startswith("cls.predictions.") for key in loading_info["missing_keys"])
    if bert.config.type_vocab_size != 1:
        logger.warning(
            f"The source has type_vocab_size={bert.config.type_vocab_size}; Bort has no token types, so only token "
            "type 0 is kept. Outputs match the source for inputs whose token_type_ids are all 0."
        )
    bert_state = bert.state_dict()
    has_head = head_in_source and "cls.predictions.transform.dense.weight" in bert_state
    if not has_head:
        bert_state = {name: tensor for name, tensor in bert_state.items() if not name.startswith("cls.")}
    prefix = "bert." if any(k.startswith("bert.") for k in bert_state) else ""
    bort_state = bert_state_dict_to_bort(bert_state, prefix=prefix)

    bort = BortForMaskedLM(bort_config_from_bert(bert.config))
    bort_state["lm_head.decoder.weight"] = bort_state["bort.embeddings.word_embeddings.weight"]
    missing, unexpected = bort.load_state_dict(bort_state, strict=False)
    expected_missing = set() if has_head else {k for k in bort.state_dict() if k.startswith("lm_head.")}
    if unexpected or set(missing) - expected_missing:
        raise ValueError(
            f"Checkpoint layout not recognised: missing {sorted(missing)}, unexpected {sorted(unexpected)}."
        )
    message = UNTRAINED_HEAD_WARNING if has_head else NO_HEAD_WARNING
    warnings.warn(message, UserWarning, stacklevel=2)
    logger.warning(message)

    if save_directory is not None:
        bort.save_pretrained(save_directory)
        if not isinstance(source, BertPreTrainedModel):
            try:
                AutoTokenizer.from_pretrained(source).save_pretrained(save_directory)
            except (OSError, ValueError):
                logger.warning(f"No tokenizer found with {source}; save one next to the model before fine-tuning.")
    return bort


__all__ = ["BERT_CLASSIFIER_TO_BORT", "bert_state_dict_to_bort", "bort_config_from_bert", "convert_bert_checkpoint"]
