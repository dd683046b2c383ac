"""benchmarks/compress_gradual.py: the masked halfway model computes what the extracted halfway model computes, and its
masked heads and neurons stay at zero through training."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from benchmarks.compress_gradual import halfway_masks, mask_in_place
from hf_bort.ose import Architecture
from hf_bort.ose.extract import compute_importance, extract_subnetwork
from tests.conftest import TINY_DIMS


HEAD_DIM = TINY_DIMS["hidden_size"] // TINY_DIMS["num_attention_heads"]


@pytest.fixture
def parent_and_scores():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    parent = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 99, (8, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (8,))}
    return parent, batch, compute_importance(parent, [batch], method="fisher")


def test_the_masked_halfway_model_is_the_extracted_halfway_model(parent_and_scores):
    parent, batch, scores = parent_and_scores
    config = parent.config
    student = extract_subnetwork(
        parent, Architecture(1, 1, config.hidden_size, 8, HEAD_DIM), allocation="importance", importance=scores
    )
    masks = halfway_masks(parent, student.config, scores)
    heads = [int(m["heads"].sum()) for m in masks]
    neurons = [int(m["neurons"].sum()) for m in masks]
    # halfway between the parent's counts and the student's (0 in the layers it dropped), rounded up
    kept = dict(zip(student.config.parent_layers, [1] * len(student.config.parent_layers)))
    assert heads == [-(-(config.num_attention_heads + kept.get(j, 0)) // 2) for j in range(config.num_hidden_layers)]
    assert neurons[0] < config.intermediate_size

    halfway = BertForSequenceClassification(config).eval()
    halfway.load_state_dict(parent.state_dict())
    mask_in_place(halfway, masks)
    extracted = extract_subnetwork(
        parent,
        Architecture(config.num_hidden_layers, max(heads), config.hidden_size, max(neurons), HEAD_DIM),
        allocation={"heads": heads, "intermediate": neurons},
        importance=scores,
    )
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        torch.testing.assert_close(halfway(**inputs).logits, extracted(**inputs).logits, atol=1e-5, rtol=1e-4)


def test_masked_heads_and_neurons_stay_zero_through_adamw_training(parent_and_scores):
    parent, batch, scores = parent_and_scores
    student = extract_subnetwork(
        parent, Architecture(1, 1, parent.config.hidden_size, 8, HEAD_DIM), allocation="importance", importance=scores
    )
    masks = halfway_masks(parent, student.config, scores)
    mask_in_place(parent, masks)
    dense = parent.bert.encoder.layer[0].output.dense
    dropped = masks[0]["neurons"] == 0
    assert dropped.any() and (dense.weight[:, dropped] == 0).all()
    before = dense.weight[:, ~dropped].detach().clone()
    optimizer = torch.optim.AdamW(parent.parameters(), lr=1e-2, weight_decay=0.01)
    parent.train()
    for _ in range(3):
        optimizer.zero_grad()
        parent(**batch).loss.backward()
        optimizer.step()
    assert (dense.weight[:, dropped] == 0).all()  # held at zero
    assert not torch.equal(dense.weight[:, ~dropped], before)  # while the kept neurons trained
