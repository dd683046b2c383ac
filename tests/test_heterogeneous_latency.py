"""benchmarks/heterogeneous_latency.py: its students really have equal FLOPs, and its fused-attention graph is
checked against eager: ONNX Runtime's optimizer fuses uneven layers with one head count (wrong outputs), and the
per-layer head counts the benchmark sets from each fused weight give eager's outputs again."""

import importlib.util

import pytest
import torch

from tests.conftest import REPO_ROOT


spec = importlib.util.spec_from_file_location(
    "heterogeneous_latency", REPO_ROOT / "benchmarks" / "heterogeneous_latency.py"
)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
SCALE = bench.QUICK_SCALE  # the benchmark's --quick widths: hidden 48, heads of width 4


def _student(name: str) -> torch.nn.Module:
    """The benchmark's student at --quick width, with weights 10x the usual scale, so that wrong head splits show."""
    torch.manual_seed(0)
    config = bench.student_config(*bench.STUDENTS[name], scale=SCALE)
    config.initializer_range = 0.2
    return bench.BortModel._from_config(config, attn_implementation="sdpa").eval()


def test_every_student_has_the_uniform_students_heads_neurons_and_flops():
    uniform = bench.forward_gflops(_student("uniform"), 2, 32)
    for name, (heads, ffn) in bench.STUDENTS.items():
        model = _student(name)
        built_heads = [
            layer.attention.self.num_attention_heads if layer.attention else 0 for layer in model.encoder.layer
        ]
        built_ffn = [
            layer.intermediate.dense.out_features if layer.intermediate else 0 for layer in model.encoder.layer
        ]
        assert built_heads == heads and built_ffn == [f // SCALE for f in ffn], name
        assert bench.forward_gflops(model, 2, 32) == pytest.approx(uniform, rel=1e-9), name


def test_fused_attention_of_uneven_layers_is_wrong_until_each_node_gets_its_own_head_count(tmp_path):
    model = _student("uneven")
    report, fused = bench.fusion("uneven", model, tmp_path, bench.HEAD_DIM // SCALE)
    assert report["hf_bort export, max |diff| vs eager"] < 1e-4
    assert "Attention" not in report["hf_bort export, ORT_ENABLE_ALL"]  # hf_bort's own export: no fused attention
    assert report["torchscript export, transformers optimizer"]["Attention"] == 6
    assert report["fused Attention num_heads, as fused"] == [4] * 6  # the optimizer's one num_heads for all layers
    assert report["fused, max |diff| vs eager"] > 1e-2  # ... which is wrong for layers with 8, 2 or 6 heads
    assert report["fused Attention num_heads, per layer"] == [8, 2, 6, 2, 4, 2]
    assert report["fused per layer, max |diff| vs eager"] < 1e-4
    assert fused.is_file()
