"""benchmarks/leaderboard.py: models rebuilt with per-layer shapes compute what the pruned model computes, and the
quick run's outputs agree with each other (JSON = markdown table, speed-ups meet the budget, a valid PNG)."""

import importlib.util
import sys

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from tests.conftest import REPO_ROOT, TINY_DIMS


def _load_leaderboard():
    spec = importlib.util.spec_from_file_location("leaderboard", REPO_ROOT / "benchmarks" / "leaderboard.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["leaderboard"] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


leaderboard = _load_leaderboard()


def _tiny_classifier() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config.num_labels = 2
    return BertForSequenceClassification(config).eval()


def test_build_model_with_per_layer_shapes_matches_zeroed_heads_and_neurons():
    """Removing heads and FFN neurons (different per layer, one layer with no heads at all) must give the same
    logits as the full model with those heads' value rows and those neurons' output columns zeroed."""
    full = _tiny_classifier()
    head_dim = 32 // 4
    keep_heads = [[0, 2], []]  # layer 0 keeps 2 of 4 heads, layer 1 keeps none
    keep_neurons = [torch.tensor([0, 5, 9, 30]), torch.arange(20)]
    zeroed = _tiny_classifier()
    state = {k: v.clone() for k, v in full.state_dict().items()}
    for i, (heads, neurons) in enumerate(zip(keep_heads, keep_neurons)):
        prefix = f"bert.encoder.layer.{i}."
        rows = torch.tensor([h * head_dim + d for h in heads for d in range(head_dim)], dtype=torch.long)
        value_mask = torch.zeros(32, dtype=torch.bool)
        value_mask[rows] = True
        zeroed.bert.encoder.layer[i].attention.self.value.weight.data[~value_mask] = 0
        zeroed.bert.encoder.layer[i].attention.self.value.bias.data[~value_mask] = 0
        ffn_mask = torch.zeros(37, dtype=torch.bool)
        ffn_mask[neurons] = True
        zeroed.bert.encoder.layer[i].output.dense.weight.data[:, ~ffn_mask] = 0
        for name in ("query", "key", "value"):
            state[f"{prefix}attention.self.{name}.weight"] = state[f"{prefix}attention.self.{name}.weight"][rows]
            state[f"{prefix}attention.self.{name}.bias"] = state[f"{prefix}attention.self.{name}.bias"][rows]
        state[f"{prefix}attention.output.dense.weight"] = state[f"{prefix}attention.output.dense.weight"][:, rows]
        state[f"{prefix}intermediate.dense.weight"] = state[f"{prefix}intermediate.dense.weight"][neurons]
        state[f"{prefix}intermediate.dense.bias"] = state[f"{prefix}intermediate.dense.bias"][neurons]
        state[f"{prefix}output.dense.weight"] = state[f"{prefix}output.dense.weight"][:, neurons]
    shapes = {
        "hidden": 32,
        "layers": [
            {"heads": len(h), "head_dim": head_dim if h else 0, "intermediate": len(n)}
            for h, n in zip(keep_heads, keep_neurons)
        ],
    }
    rebuilt = leaderboard.build_model(shapes, full.config, 2, state).eval()
    assert leaderboard.model_shapes(rebuilt) == shapes
    assert leaderboard.count_params(rebuilt) < leaderboard.count_params(full)
    ids = torch.randint(5, 99, (3, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = zeroed(input_ids=ids).logits
        got = rebuilt(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_build_model_rejects_a_state_that_lacks_weights():
    full = _tiny_classifier()
    state = {k: v for k, v in full.state_dict().items() if "classifier" not in k}
    with pytest.raises(ValueError, match="lacks .*classifier"):
        leaderboard.build_model(leaderboard.model_shapes(full), full.config, 2, state)


def test_save_and_load_compressed_round_trips_bit_exact(tmp_path):
    model = _tiny_classifier()
    leaderboard.save_compressed(model, tmp_path / "m", {"note": "x"})
    loaded, info = leaderboard.load_compressed(tmp_path / "m", model.config, 2)
    assert info == {"note": "x"}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
