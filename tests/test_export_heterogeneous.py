"""ONNX export, int8 and ONNX Runtime for heterogeneous Bort students (layers with their own head counts and FFN
widths, and skipped sub-layers), against the eager model: fp32 within 1e-4, int8 with the same label on most rows.

The same tolerances as tests/test_export.py (initializer_range 0.1, so that logits span about +-1).
"""

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from hf_bort import BortConfig, BortForSequenceClassification, ORTModelForSequenceClassification
from hf_bort.cli import build_parser
from hf_bort.export import OnnxEncoder, export_onnx, quantize_onnx_int8
from tests.conftest import minilm_dir
from tests.test_export import _inputs


FP32_ATOL = 1e-4
INT8_LOGIT_RTOL = 0.05
INT8_ARGMAX_AGREEMENT = 0.9
# Four layers, each unlike the others: fewer heads and a narrower FFN, more heads than fill the hidden size and a
# wider FFN, no attention, no FFN.
PER_LAYER = {
    0: {"num_attention_heads": 2, "intermediate_size": 20},
    1: {"num_attention_heads": 6, "intermediate_size": 48},
    2: {"skip": ["attention"]},
    3: {"skip": ["mlp"]},
}
TEXTS = ["a gripping, funny and moving film", "dull.", "the plot is thin but the cast saves it", "not bad at all"]


def _config(vocab_size: int) -> BortConfig:
    config = BortConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=3,
        initializer_range=0.1,
        per_layer_config=PER_LAYER,
    )
    config.id2label, config.label2id = {0: "neg", 1: "mixed", 2: "pos"}, {"neg": 0, "mixed": 1, "pos": 2}
    return config


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    """The heterogeneous classifier, exported once, and saved with a tokenizer for the CLI."""
    root = tmp_path_factory.mktemp("heterogeneous")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    config = _config(tokenizer.vocab_size)
    model = BortForSequenceClassification(config).eval()
    graph = export_onnx(model, root / "model.onnx")
    model.save_pretrained(root / "ckpt")
    tokenizer.save_pretrained(root / "ckpt")
    return model, graph, tokenizer, root


def test_the_students_layers_really_differ(students):
    layers = students[0].bort.encoder.layer
    heads = [layer.attention.self.num_attention_heads if layer.attention else 0 for layer in layers]
    ffn = [layer.intermediate.dense.out_features if layer.intermediate else 0 for layer in layers]
    assert (heads, ffn) == ([2, 6, 0, 4], [20, 48, 37, 0])


def test_onnx_runtime_matches_eager_on_dynamic_shapes(students):
    model, graph, *_ = students
    encoder = OnnxEncoder(graph, num_threads=1)
    for batch, length in [(3, 17), (1, 5), (2, 64)]:  # none is the export's example shape (2, 8)
        input_ids, attention_mask = _inputs(batch, length, model.config.vocab_size)
        with torch.no_grad():
            expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
        actual = encoder(input_ids, attention_mask=attention_mask).logits
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, atol=FP32_ATOL, rtol=0)


def test_int8_keeps_the_labels_of_most_rows(students, tmp_path):
    model, graph, *_ = students
    input_ids, attention_mask = _inputs(64, 24, model.config.vocab_size, seed=1)
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
    int8 = OnnxEncoder(quantize_onnx_int8(graph, tmp_path / "int8.onnx"), num_threads=1)
    actual = int8(input_ids, attention_mask=attention_mask).logits
    assert not torch.equal(actual, expected)  # really quantized
    assert (actual - expected).abs().max().item() <= INT8_LOGIT_RTOL * expected.abs().max().item()
    assert (actual.argmax(-1) == expected.argmax(-1)).float().mean().item() >= INT8_ARGMAX_AGREEMENT


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_cli_export_runs_in_a_pipeline_with_the_eager_models_labels(students, tmp_path, int8):
    """`hf-bort export` of the saved student, then `ORTModelForSequenceClassification` in a text-classification
    pipeline: fp32 gives eager's labels and scores, int8 the same top label on most texts."""
    model, _, tokenizer, root = students
    args = build_parser().parse_args(["export", str(root / "ckpt"), str(tmp_path / "onnx"), *(["--int8"] * int8)])
    assert args.func(args) == 0
    ort_model = ORTModelForSequenceClassification.from_pretrained(tmp_path / "onnx")
    assert ort_model.config.per_layer_config[1].num_attention_heads == 6  # the config travels with the graph
    fast = pipeline("text-classification", model=ort_model, tokenizer=str(tmp_path / "onnx"), top_k=None)
    eager = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None, device="cpu")
    got, want = fast(TEXTS), eager(TEXTS)
    if int8:
        agreement = sum(g[0]["label"] == w[0]["label"] for g, w in zip(got, want)) / len(TEXTS)
        assert agreement >= 0.75
    else:
        for g, w in zip(got, want):
            assert [x["label"] for x in g] == [x["label"] for x in w]
            assert [x["score"] for x in g] == pytest.approx([x["score"] for x in w], abs=FP32_ATOL)


def test_from_pretrained_with_export_true_exports_the_student(students):
    model, _, tokenizer, root = students
    ort_model = ORTModelForSequenceClassification.from_pretrained(root / "ckpt", export=True)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
    torch.testing.assert_close(ort_model(**batch).logits, expected, atol=FP32_ATOL, rtol=0)
