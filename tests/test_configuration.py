import json

import pytest
from transformers import AutoConfig

from hf_bort import BortConfig


def test_defaults_are_the_released_bort():
    config = AutoConfig.for_model("bort")
    assert isinstance(config, BortConfig)
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size, config.intermediate_size) == (
        4,
        8,
        1024,
        768,
    )
    assert config.vocab_size == 50265
    assert config.max_position_embeddings == 512
    assert config.hidden_act == "gelu"
    assert config.layer_norm_eps == 1e-5
    assert config.pad_token_id == 1
    assert config.head_dim == 128
    assert not hasattr(config, "type_vocab_size")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "num_attention_heads"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"intermediate_size": -1}, "intermediate_size"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob"),
        ({"attention_probs_dropout_prob": -0.1}, "attention_probs_dropout_prob"),
        ({"classifier_dropout": 1.5}, "classifier_dropout"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BortConfig(**kwargs)


def test_explicit_head_dim_allows_heads_not_dividing_hidden():
    config = BortConfig(hidden_size=30, num_attention_heads=4, head_dim=8)
    assert config.num_attention_heads * config.head_dim == 32


def test_per_layer_config_round_trips_and_each_layer_reads_its_own_sizes(tmp_path):
    per_layer = {0: {"num_attention_heads": 2, "intermediate_size": 20}, 2: {"skip": ["mlp"]}}
    config = BortConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, per_layer_config=per_layer)
    layers = config.per_layer_config
    assert [(c.num_attention_heads, c.intermediate_size, c.skip) for c in layers] == [
        (2, 20, []),
        (4, 768, []),
        (4, 768, ["mlp"]),
    ]
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["per_layer_config"]
    assert saved == {"0": {"num_attention_heads": 2, "intermediate_size": 20}, "2": {"skip": ["mlp"]}}
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert [(c.num_attention_heads, c.skip) for c in loaded.per_layer_config] == [(2, []), (4, []), (4, ["mlp"])]


@pytest.mark.parametrize(
    ("per_layer", "words"),
    [
        ({5: {"num_attention_heads": 2}}, r"range \[0, 3\)"),  # a layer that does not exist (transformers' check)
        ({0: {"hidden_size": 16}}, "cannot vary.*hidden_size"),
        ({1: {"num_attention_heads": 0}}, r"per_layer_config\[1\]\.num_attention_heads must be a positive integer"),
        ({1: {"head_dim": 0}}, r"per_layer_config\[1\]\.head_dim must be a positive integer"),
        ({0: {"skip": ["ffn"]}}, "can skip 'attention' and/or 'mlp'"),
        ({0: {"skip": "mlp"}}, "given as a list"),
    ],
    ids=["a layer that does not exist", "hidden_size per layer", "0 heads", "head_dim 0", "a skip of ffn", "a string"],
)
def test_bad_per_layer_settings_name_the_layer_and_the_fix(per_layer, words):
    with pytest.raises(ValueError, match=words):
        BortConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, per_layer_config=per_layer)


def test_config_round_trips_through_json(tmp_path):
    config = BortConfig(hidden_size=64, num_attention_heads=2, num_hidden_layers=3, intermediate_size=96)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "bort"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, BortConfig)
    loaded_dict, original_dict = loaded.to_dict(), config.to_dict()
    assert loaded_dict.pop("_name_or_path") == str(tmp_path)
    original_dict.pop("_name_or_path")
    assert loaded_dict == original_dict
