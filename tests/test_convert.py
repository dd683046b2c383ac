"""Conversion of BERT-format checkpoints (amazon/bort's layout) into Bort."""

import pytest
import torch
from transformers import BertModel

from hf_bort import BortForMaskedLM
from hf_bort.cli import main
from tests.test_modeling import padded_batch, reference_bert


@pytest.fixture
def bert_checkpoint(tmp_path):
    bert = reference_bert(seed=1)
    path = tmp_path / "bert-format"
    bert.save_pretrained(path)
    return path


def test_cli_convert_matches_bert_hidden_states(bert_checkpoint, tmp_path, capsys):
    destination = tmp_path / "bort"
    with pytest.warns(UserWarning, match="amazon/bort.*never trained"):
        assert main(["convert", str(bert_checkpoint), str(destination)]) == 0
    assert "BortForMaskedLM" in capsys.readouterr().out
    bort = BortForMaskedLM.from_pretrained(destination).eval()
    bert = BertModel.from_pretrained(bert_checkpoint, add_pooling_layer=False).eval()
    input_ids, attention_mask = padded_batch(bert.config.vocab_size, batch=4, length=12, seed=3)
    with torch.no_grad():
        expected = bert(input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        actual = bort.bort(input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
    for ours, theirs in zip(actual, expected, strict=True):
        assert (ours - theirs).abs().max().item() <= 1e-5


def test_convert_refuses_to_overwrite_a_saved_folder(bert_checkpoint, tmp_path, capsys):
    destination = tmp_path / "precious"
    destination.mkdir()
    (destination / "notes.txt").write_text("keep me")
    assert main(["convert", str(bert_checkpoint), str(destination)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hf-bort: error: ") and "not empty" in error and "--overwrite" in error
    assert (destination / "notes.txt").read_text() == "keep me"


def test_convert_rejects_a_non_bert_checkpoint(tmp_path, tiny_bort_config):
    from hf_bort import BortModel

    BortModel(tiny_bort_config).save_pretrained(tmp_path / "bort")
    with pytest.raises(ValueError, match="model_type 'bort'.*needs no conversion"):
        main(["convert", str(tmp_path / "bort"), str(tmp_path / "out"), "--debug"])
    assert not (tmp_path / "out").exists()
