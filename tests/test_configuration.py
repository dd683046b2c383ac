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
    assert config.attention_width == 32


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
