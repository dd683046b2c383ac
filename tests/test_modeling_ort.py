"""The exported classifier as a model: ORTModelForSequenceClassification in a text-classification pipeline."""

import json

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from hf_bort import BortConfig, BortForSequenceClassification, ORTModelForSequenceClassification
from hf_bort.cli import build_parser
from tests.conftest import TINY_DIMS, minilm_dir


TEXTS = ["a gripping, funny and moving film", "dull.", ("the plot is thin", "but the cast saves it")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny Bort classifier with MiniLM's tokenizer, saved, then exported by `hf-bort export` to a folder."""
    root = tmp_path_factory.mktemp("ort")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    config = BortConfig(vocab_size=tokenizer.vocab_size, **TINY_DIMS, num_labels=3)
    config.id2label, config.label2id = {0: "neg", 1: "mixed", 2: "pos"}, {"neg": 0, "mixed": 1, "pos": 2}
    model = BortForSequenceClassification(config).eval()
    model.save_pretrained(root / "ckpt")
    tokenizer.save_pretrained(root / "ckpt")
    parser = build_parser()
    args = parser.parse_args(["export", str(root / "ckpt"), str(root / "onnx")])
    assert args.func(args) == 0
    return model, tokenizer, root


def _as_inputs(texts):
    return [{"text": t[0], "text_pair": t[1]} if isinstance(t, tuple) else t for t in texts]


def test_pipeline_gives_the_eager_models_labels_and_scores(exported):
    model, tokenizer, root = exported
    assert {p.name for p in (root / "onnx").iterdir()} >= {"model.onnx", "config.json", "tokenizer.json"}
    ort_model = ORTModelForSequenceClassification.from_pretrained(root / "onnx")
    fast = pipeline("text-classification", model=ort_model, tokenizer=str(root / "onnx"), top_k=None)
    eager = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None, device="cpu")
    for got, want in zip(fast(_as_inputs(TEXTS)), eager(_as_inputs(TEXTS))):
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-4)
    batch = tokenizer(["a gripping film", "dull."], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
    torch.testing.assert_close(ort_model(**batch).logits, expected, atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip_the_graph_bit_exact(exported, tmp_path):
    _, _, root = exported
    ort_model = ORTModelForSequenceClassification.from_pretrained(root / "onnx")
    ort_model.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "model.onnx").read_bytes() == (root / "onnx" / "model.onnx").read_bytes()
    reloaded = ORTModelForSequenceClassification.from_pretrained(tmp_path / "copy")
    assert reloaded.config.id2label == {0: "neg", 1: "mixed", 2: "pos"}
    assert json.loads((tmp_path / "copy" / "config.json").read_text()) == json.loads(
        (root / "onnx" / "config.json").read_text()
    )


def test_int8_folder_loads_and_agrees_with_fp32_on_labels(exported, tmp_path):
    model, tokenizer, root = exported
    parser = build_parser()
    args = parser.parse_args(["export", str(root / "ckpt"), str(tmp_path / "int8"), "--int8"])
    assert args.func(args) == 0
    assert {p.name for p in (tmp_path / "int8").glob("*.onnx")} == {"model_quantized.onnx"}
    int8 = ORTModelForSequenceClassification.from_pretrained(tmp_path / "int8")
    batch = tokenizer(["a gripping film", "dull.", "the cast saves it"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
    assert (int8(**batch).logits - expected).abs().max() < 0.05
    with pytest.raises(FileExistsError, match="overwrite"):
        args.func(args)


def test_a_folder_without_a_graph_or_with_an_encoder_is_a_clear_error(exported, tmp_path):
    _, _, root = exported
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_bytes((root / "onnx" / "config.json").read_bytes())
    with pytest.raises(FileNotFoundError, match="hf-bort export"):
        ORTModelForSequenceClassification.from_pretrained(tmp_path / "empty")
