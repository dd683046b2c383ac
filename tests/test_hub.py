"""Model cards: the GLUE card rendered from model_cards/, and the card for Bort itself with honest sizes."""

import re

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import BertConfig

from hf_bort import BortConfig, BortModel
from hf_bort.hub import MODEL_CARDS_DIR, render_model_card, save_model_card


def _results(agora: bool) -> dict:
    scores = {"accuracy": 0.8125, "f1": 0.8571, "loss": 0.41}
    metrics = {"dev": {"accuracy": 0.75, "f1": 0.8, "loss": 0.5}, "test": scores} if agora else {"validation": scores}
    return {
        "task": "mrpc",
        "model": "amazon/bort",
        "lora": False,
        "agora": agora,
        "official_dev_is": "test" if agora else "validation",
        "num_processes": 2,
        "rows": {"train": 3301, "dev": 367, "test": 408} if agora else {"train": 3668, "validation": 408},
        "metrics": metrics,
        "num_parameters": 75_108_354,
        "trainable_parameters": 75_108_354,
        "train_seconds": 812.5,
        "train_loss": 0.45,
        "cpu_latency_ms": 7.25,
        "hyperparameters": {"learning_rate": 3e-5, "num_train_epochs": 3, "max_length": 128},
        **(
            {"agora_rounds": 2, "agora_teacher": "me/roberta-mrpc", "agora_history": [{"kept": 40}, {"kept": 12}]}
            if agora
            else {}
        ),
    }


def _config() -> BertConfig:
    return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def test_agora_card_reports_the_official_dev_set_as_test():
    card = render_model_card(_results(agora=True), _config(), num_parameters=75_108_354, ose_point="⟨4, 8, 1024, 768⟩")
    data = card.data.to_dict()
    assert data["base_model"] == "amazon/bort" and data["datasets"] == ["nyu-mll/glue"]
    assert "agora" in data["tags"] and data["library_name"] == "transformers"
    results = data["model-index"][0]["results"]
    assert len(results) == 1  # the carved dev set is not an official GLUE number
    assert results[0]["dataset"]["split"] == "validation" and results[0]["dataset"]["config"] == "mrpc"
    assert {m["type"]: m["value"] for m in results[0]["metrics"]} == {"accuracy": 0.8125, "f1": 0.8571}
    text = card.text
    assert "⟨2, 4, 32, 37⟩" in text and "75,108,354" in text and "OSE point | ⟨4, 8, 1024, 768⟩" in text
    assert "carved out of train" in text and "**test**" in text and "for 2 rounds" in text
    assert "teacher `me/roberta-mrpc` (52 rows added in all)" in text
    assert "| test (official dev) | 408 | 0.8125 | 0.8571 |" in text
    assert "| dev (carved from train) | 367 | 0.7500 |" in text
    assert "7.25 ms" in text and "non-commercial" in text


def test_plain_card_round_trips_through_save(tmp_path):
    results = _results(agora=False)
    save_model_card(tmp_path, results, _config(), lora=True)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert [r.metric_value for r in card.data.eval_results] == [0.8125, 0.8571]
    assert "Not used: plain fine-tuning." in card.text and "official GLUE dev set is the evaluation set" in card.text
    assert "none (architecture not extracted with OSE)" in card.text


def test_missing_template_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="template_path="):
        render_model_card(_results(agora=False), _config(), template_path=tmp_path / "nope.md")


def _count(config: BortConfig) -> tuple[int, int]:
    with torch.device("meta"):
        model = BortModel(config)
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.embeddings.parameters())


def test_bort_card_sizes_are_rederived_from_the_config():
    card = ModelCard.load(MODEL_CARDS_DIR / "bort.md")
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    for config in (BortConfig(), BortConfig(hidden_size=768, intermediate_size=1024)):
        total, embeddings = _count(config)
        shape = (
            f"⟨{config.num_hidden_layers}, {config.num_attention_heads}, {config.hidden_size}, "
            f"{config.intermediate_size}⟩"
        )
        row = next(line for line in card.text.splitlines() if line.startswith(f"| {shape}"))
        numbers = [int(n.replace(",", "")) for n in re.findall(r"\d{1,3}(?:,\d{3})+", row)]
        assert numbers == [embeddings, total - embeddings, total]
    assert _count(BortConfig())[0] == 75_106_304
    assert "masked-LM head of `amazon/bort` is untrained" in card.text


def test_card_of_a_heterogeneous_student_lists_each_layers_sizes():
    config = BortConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=37,
        per_layer_config={0: {"num_attention_heads": 2, "intermediate_size": 20}, 2: {"skip": ["mlp"]}},
    )
    card = render_model_card(_results(agora=False), config, num_parameters=12_345)
    assert "⟨3, 2/4/4, 32, 20/37/0⟩" in str(card)  # 0: layer 2 has no FFN


def test_the_data_section_names_the_local_files_that_were_read():
    results = {
        **_results(agora=False),
        "data": {"files": {"train": "glue/MRPC/train.tsv", "validation": "glue/MRPC/dev.tsv"}},
    }
    card = render_model_card(results, _config())
    assert "datasets" not in card.data.to_dict()
    data = card.text.split("## Data")[1].split("##")[0]
    assert "read from local files `glue/MRPC/train.tsv` (train), `glue/MRPC/dev.tsv` (validation), not from" in data
    assert "](https://huggingface.co/datasets/nyu-mll/glue)" not in data
    hub = render_model_card({**_results(agora=False), "data": "nyu-mll/glue"}, _config())
    assert "[nyu-mll/glue](https://huggingface.co/datasets/nyu-mll/glue), config `mrpc`" in hub.text
