"""Fast inference paths against eager PyTorch: ONNX Runtime fp32, int8 (ORT and PyTorch), torch.compile.

Stated tolerances (tiny random models, hidden 32, initializer_range 0.1 so that logits span about +-1):
- fp32 paths (ONNX Runtime, torch.compile) match eager within 1e-4 absolute;
- int8 paths: logits within 5% of the largest |fp32 logit| and the same argmax on at least 90% of 64 rows;
  real-task accuracy of int8 is measured in benchmarks/int8_accuracy.py.
"""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from hf_bort import BortForSequenceClassification, BortModel
from hf_bort.cli import build_parser
from hf_bort.export import (
    OnnxEncoder,
    compile_for_cpu,
    export_onnx,
    quantize_dynamic_int8,
    quantize_onnx_int8,
)


FP32_ATOL = 1e-4
INT8_LOGIT_RTOL = 0.05
INT8_ARGMAX_AGREEMENT = 0.9


def _tiny_bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=3,
        initializer_range=0.1,
    )


def _inputs(batch: int, length: int, vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with right padding on the first row, so the mask is exercised."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length // 2 :] = 0
    return input_ids, attention_mask


def _main_output(output) -> torch.Tensor:
    return output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state


@pytest.fixture(scope="module")
def tiny_models():
    from hf_bort import BortConfig

    torch.manual_seed(0)
    bort_config = BortConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=3,
        initializer_range=0.1,
    )
    return {
        "bort": BortModel(bort_config).eval(),
        "bort-cls": BortForSequenceClassification(bort_config).eval(),
        "bert": BertModel(_tiny_bert_config()).eval(),
        "bert-cls": BertForSequenceClassification(_tiny_bert_config()).eval(),
    }


@pytest.fixture(scope="module")
def exported(tiny_models, tmp_path_factory):
    """Each tiny model exported once for the whole module (export takes a few seconds per model)."""
    folder = tmp_path_factory.mktemp("onnx")
    return {name: export_onnx(model, folder / f"{name}.onnx") for name, model in tiny_models.items()}


@pytest.mark.parametrize("name", ["bort", "bort-cls", "bert", "bert-cls"])
def test_onnx_matches_eager_on_dynamic_shapes(tiny_models, exported, name):
    model, encoder = tiny_models[name], OnnxEncoder(exported[name], num_threads=1)
    assert encoder.output_names == (["logits"] if name.endswith("cls") else ["last_hidden_state"])
    for batch, length in [(3, 17), (1, 5), (2, 64)]:  # none of these is the export's example shape (2, 8)
        input_ids, attention_mask = _inputs(batch, length, model.config.vocab_size)
        with torch.no_grad():
            expected = _main_output(model(input_ids=input_ids, attention_mask=attention_mask))
        actual = _main_output(encoder(input_ids, attention_mask=attention_mask))
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, atol=FP32_ATOL, rtol=0)


def test_onnx_encoder_defaults_to_full_mask_and_ignores_token_type_ids(tiny_models, exported):
    input_ids = _inputs(2, 9, 99)[0]
    encoder = OnnxEncoder(exported["bort"], num_threads=1)
    with torch.no_grad():
        expected = tiny_models["bort"](input_ids).last_hidden_state
    actual = encoder(input_ids.numpy(), token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=FP32_ATOL, rtol=0)


def _assert_int8_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert (actual - expected).abs().max().item() <= INT8_LOGIT_RTOL * expected.abs().max().item()
    agreement = (actual.argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert agreement >= INT8_ARGMAX_AGREEMENT


@pytest.mark.parametrize("name", ["bort-cls", "bert-cls"])
def test_int8_paths_stay_close_to_fp32(tiny_models, exported, tmp_path, name):
    model = tiny_models[name]
    input_ids, attention_mask = _inputs(64, 24, model.config.vocab_size, seed=1)
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits

    int8_path = quantize_onnx_int8(exported[name], tmp_path / "int8.onnx")
    ops = {node.op_type for node in __import__("onnx").load(int8_path).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops  # the MatMuls really became int8
    _assert_int8_close(OnnxEncoder(int8_path, num_threads=1)(input_ids, attention_mask).logits, expected)

    quantized = quantize_dynamic_int8(model)
    assert isinstance(model.classifier.out_proj if name == "bort-cls" else model.classifier, torch.nn.Linear)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in quantized.modules())
    with torch.no_grad():
        _assert_int8_close(quantized(input_ids=input_ids, attention_mask=attention_mask).logits, expected)


def test_compile_for_cpu_matches_eager(tiny_models):
    model = tiny_models["bort-cls"]
    compiled = compile_for_cpu(model)
    with torch.inference_mode():
        for batch, length in [(3, 17), (2, 30)]:
            input_ids, attention_mask = _inputs(batch, length, model.config.vocab_size)
            expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
            actual = compiled(input_ids=input_ids, attention_mask=attention_mask).logits
            torch.testing.assert_close(actual, expected, atol=FP32_ATOL, rtol=0)


def test_existing_files_are_not_overwritten(tiny_models, exported, tmp_path):
    model = tiny_models["bort"].train()
    target = tmp_path / "model.onnx"
    target.write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx(model, target)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        quantize_onnx_int8(exported["bort"], target)
    assert target.read_bytes() == b"user data"

    export_onnx(model, target, overwrite=True)
    assert model.training, "export must restore the caller's train/eval mode"
    model.eval()
    input_ids, attention_mask = _inputs(2, 7, 99)
    with torch.no_grad():
        expected = model(input_ids, attention_mask=attention_mask).last_hidden_state
    actual = OnnxEncoder(target, num_threads=1)(input_ids, attention_mask).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=FP32_ATOL, rtol=0)


def test_missing_or_corrupt_onnx_raises_clear_error(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        OnnxEncoder(tmp_path / "absent.onnx")
    with pytest.raises(FileNotFoundError, match="export one first"):
        quantize_onnx_int8(tmp_path / "absent.onnx", tmp_path / "out.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(exported["bort"].read_bytes()[:1000])  # a truncated download
    with pytest.raises(ValueError, match="not a readable ONNX model.*overwrite"):
        OnnxEncoder(corrupt)


def test_onnx_encoder_rejects_bad_inputs(exported):
    encoder = OnnxEncoder(exported["bort"], num_threads=1)
    with pytest.raises(ValueError, match="outside \\[0, 99\\)"):
        encoder(torch.tensor([[1, 2, 99]]))
    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        encoder(torch.ones(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        encoder(torch.ones(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4, dtype=torch.long))


def test_export_cli_writes_a_runnable_int8_model(tiny_models, tmp_path):
    model = tiny_models["bort-cls"]
    model.save_pretrained(tmp_path / "ckpt")
    parser = build_parser()
    output = tmp_path / "model-int8.onnx"
    args = parser.parse_args(["export", str(tmp_path / "ckpt"), str(output), "--int8"])
    assert args.func(args) == 0

    encoder = OnnxEncoder(output, num_threads=1)
    assert encoder.output_names == ["logits"]  # --task auto picked the sequence-classification head
    assert encoder.metadata["architecture"] == "BortForSequenceClassification"
    input_ids, attention_mask = _inputs(64, 24, 99, seed=2)
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
    _assert_int8_close(encoder(input_ids, attention_mask).logits, expected)

    with pytest.raises(FileExistsError, match="overwrite"):
        args.func(parser.parse_args(["export", str(tmp_path / "ckpt"), str(output)]))
