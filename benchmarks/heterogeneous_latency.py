"""Do uneven layers cost CPU latency at equal FLOPs, and does ONNX Runtime still fuse their attention?

A MiniLM-shaped student (6 layers, hidden 384, heads of width 32) with 4 heads and 768 FFN neurons in every layer,
against heterogeneous Bort students (`per_layer_config`) with the same total heads (24) and FFN neurons (4,608), so
the same FLOPs (checked with torch's FlopCounterMode), spread unevenly over the layers; 0 skips the sub-layer.

Timing: 1 thread, inputs of 1x128 and 8x128 tokens, warm-up, then repeats with the models alternating call by call
(benchmarks/leaderboard.py's protocol: a change of machine load hits every model alike); the median wall time.
Paths: eager PyTorch fp32 (SDPA); ONNX Runtime fp32 of hf_bort's export (`export_onnx`, `OnnxEncoder`: all graph
optimisations); and ONNX Runtime with fused attention ("ort-fused", below).

Fusion: the fused contrib ops (com.microsoft domain) in the graph ONNX Runtime optimises with ORT_ENABLE_ALL
(`SessionOptions.optimized_model_filepath`), and those `onnxruntime.transformers.optimizer` makes (model_type
"bert"), for hf_bort's export (torch.onnx dynamo) and for the TorchScript exporter's graph of the same weights, whose
attention the optimizer's patterns match. The optimizer takes one `num_heads` for the whole model; every fused
`Attention` node's output is checked against eager, as fused and after setting each node's `num_heads` from its own
weight (its width / 32). "ort-fused" times that corrected graph.

Writes heterogeneous_latency.json, heterogeneous_latency.md and heterogeneous_latency.png into --output-dir.

    OMP_NUM_THREADS=1 python benchmarks/heterogeneous_latency.py      # into benchmarks/results/heterogeneous_latency/
    python benchmarks/heterogeneous_latency.py --quick --output-dir /tmp/hl   # checks the script: tiny, 3 repeats
"""

import argparse
import collections
import json
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode

from hf_bort import BortConfig, BortModel
from hf_bort.export import OnnxEncoder, export_onnx


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "heterogeneous_latency"
HIDDEN, HEAD_DIM, UNIFORM_HEADS, UNIFORM_FFN = 384, 32, 4, 768
# (heads per layer, FFN neurons per layer); every row sums to 24 heads and 4,608 neurons. 0 skips the sub-layer.
STUDENTS = {
    "uniform": ([4, 4, 4, 4, 4, 4], [768, 768, 768, 768, 768, 768]),
    "uneven": ([8, 2, 6, 2, 4, 2], [1536, 256, 1024, 256, 768, 768]),
    "skewed": ([12, 6, 2, 2, 1, 1], [2304, 1152, 512, 320, 192, 128]),
    "skipping": ([6, 6, 6, 6, 0, 0], [0, 0, 1152, 1152, 1152, 1152]),
}
PATHS = ("eager", "ort", "ort-fused")
QUICK_SCALE = 8  # --quick divides hidden, head width and FFN widths by this (head counts stay)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="heterogeneous_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--shapes", nargs="+", default=None, help="batch x tokens (default 1x128 8x128)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per model, path and shape (50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per model, path and shape first")
    parser.add_argument("--quick", action="store_true", help="models 8x narrower, 1x16 and 2x16, 3 repeats")
    args = parser.parse_args(argv)
    args.shapes = [
        tuple(int(n) for n in s.split("x"))
        for s in args.shapes or (["1x16", "2x16"] if args.quick else ["1x128", "8x128"])
    ]
    args.repeats = args.repeats or (3 if args.quick else 50)
    return args


def student_config(heads: list[int], ffn: list[int], scale: int = 1) -> BortConfig:
    """Bort of MiniLM's shape (divided by `scale`) with these heads and FFN widths per layer."""
    per_layer = {}
    for layer, (h, f) in enumerate(zip(heads, ffn)):
        overrides = {"num_attention_heads": h or UNIFORM_HEADS, "intermediate_size": (f or UNIFORM_FFN) // scale}
        overrides["skip"] = [name for name, width in (("attention", h), ("mlp", f)) if width == 0]
        per_layer[layer] = overrides
    return BortConfig(
        vocab_size=30522,
        hidden_size=HIDDEN // scale,
        num_hidden_layers=len(heads),
        num_attention_heads=UNIFORM_HEADS,
        head_dim=HEAD_DIM // scale,
        intermediate_size=UNIFORM_FFN // scale,
        max_position_embeddings=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        per_layer_config=per_layer,
    )


def _inputs(batch: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1000, 20000, (batch, length), generator=torch.Generator().manual_seed(seed))
    return ids, torch.ones_like(ids)


def forward_gflops(model: torch.nn.Module, batch: int, length: int) -> float:
    ids, mask = _inputs(batch, length)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=mask)
    return counter.get_total_flops() / 1e9


# ----------------------------------------------------------------------------------------------- fusion


def contrib_ops(graph: onnx.ModelProto) -> dict[str, int]:
    """ONNX Runtime's fused operators (com.microsoft domain) in a graph, by type."""
    return dict(collections.Counter(n.op_type for n in graph.graph.node if n.domain == "com.microsoft"))


def ort_optimised_ops(path: Path, work: Path) -> dict[str, int]:
    """The fused ops in the graph an ORT_ENABLE_ALL session runs (written by `optimized_model_filepath`)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(work / f"{path.stem}.ort-all.onnx")
    options.log_severity_level = 3  # its warning that the file is specific to this CPU
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return contrib_ops(onnx.load(options.optimized_model_filepath))


def transformers_optimizer(path: Path, head_dim: int) -> onnx.ModelProto:
    """`onnxruntime.transformers.optimizer` for BERT with the uniform student's attention shape (one num_heads)."""
    from onnxruntime.transformers import optimizer

    logging.disable(logging.WARNING)  # its hint that the attention width (4 x 32) differs from the hidden size
    try:
        optimized = optimizer.optimize_model(
            str(path), model_type="bert", num_heads=UNIFORM_HEADS, hidden_size=UNIFORM_HEADS * head_dim, opt_level=0
        )
    finally:
        logging.disable(logging.NOTSET)
    return optimized.model


def attention_heads(graph: onnx.ModelProto) -> list[int]:
    return [
        next(a.i for a in n.attribute if a.name == "num_heads") for n in graph.graph.node if n.op_type == "Attention"
    ]


def set_heads_from_weights(graph: onnx.ModelProto, head_dim: int) -> None:
    """Each fused Attention node's num_heads from its packed q/k/v weight (hidden x 3 * width): width / head_dim."""
    shapes = {init.name: list(init.dims) for init in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Attention":
            heads = shapes[node.input[1]][1] // 3 // head_dim
            next(a for a in node.attribute if a.name == "num_heads").i = heads


def export_torchscript(model: BortModel, path: Path) -> Path:
    """The same weights through the TorchScript exporter (eager attention), whose graph the optimizer fuses."""
    eager = BortModel._from_config(model.config, attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = eager

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    dynamic = {name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper(),
            _inputs(2, 16),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            opset_version=17,
            dynamo=False,
            dynamic_axes=dynamic,
        )
    return path


def max_diff(path: Path, model: BortModel) -> float:
    """Largest |ONNX Runtime - eager| over a padded batch."""
    ids, mask = _inputs(3, 40, seed=1)
    mask[0, 20:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    actual = OnnxEncoder(path, num_threads=1)(ids, attention_mask=mask)[0]
    return float((actual - expected).abs().max())


def fusion(name: str, model: BortModel, work: Path, head_dim: int) -> tuple[dict, Path | None]:
    """Fused ops of both exports, and the corrected fused graph for timing (None where the optimizer fused none)."""
    dynamo = export_onnx(model, work / f"{name}.onnx")
    report = {
        "hf_bort export, ORT_ENABLE_ALL": ort_optimised_ops(dynamo, work),
        "hf_bort export, transformers optimizer": contrib_ops(transformers_optimizer(dynamo, head_dim)),
        "hf_bort export, max |diff| vs eager": max_diff(dynamo, model),
    }
    try:
        torchscript = export_torchscript(model, work / f"{name}.torchscript.onnx")
    except Exception as error:  # the TorchScript exporter is deprecated; its absence is a result, not a crash
        report["torchscript export"] = f"unavailable: {type(error).__name__}: {error}"
        return report, None
    fused = transformers_optimizer(torchscript, head_dim)
    report["torchscript export, transformers optimizer"] = contrib_ops(fused)
    report["fused Attention num_heads, as fused"] = attention_heads(fused)
    onnx.save(fused, work / f"{name}.fused.onnx")
    report["fused, max |diff| vs eager"] = max_diff(work / f"{name}.fused.onnx", model)
    if not attention_heads(fused):
        return report, None
    set_heads_from_weights(fused, head_dim)
    report["fused Attention num_heads, per layer"] = attention_heads(fused)
    onnx.save(fused, work / f"{name}.fused-per-layer.onnx")
    report["fused per layer, max |diff| vs eager"] = max_diff(work / f"{name}.fused-per-layer.onnx", model)
    return report, work / f"{name}.fused-per-layer.onnx"


# ----------------------------------------------------------------------------------------------- timing


def time_alternating(calls: dict, inputs: tuple, warmup: int, repeats: int) -> dict[str, dict]:
    """Median (and quartiles of) wall ms per call, the callables alternating call by call."""
    for _ in range(warmup):
        for call in calls.values():
            call(*inputs)
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call(*inputs)
            times[name].append((time.perf_counter() - start) * 1000)
    result = {}
    for name, values in times.items():
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        result[name] = {"median_ms": statistics.median(values), "p25_ms": quartiles[0], "p75_ms": quartiles[2]}
    return result


def runners(models: dict, graphs: dict, path: str, threads: int) -> dict:
    if path == "eager":
        return {
            name: (lambda ids, mask, m=model: m(input_ids=ids, attention_mask=mask)) for name, model in models.items()
        }
    sessions = {name: OnnxEncoder(graph, num_threads=threads) for name, graph in graphs[path].items()}
    return {name: (lambda ids, mask, s=session: s(ids, attention_mask=mask)) for name, session in sessions.items()}


# ----------------------------------------------------------------------------------------------- report


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# Heterogeneous students: CPU latency at equal FLOPs",
        "",
        f"{report['settings']['threads']} thread(s), median of {report['settings']['repeats']} calls after "
        f"{report['settings']['warmup']} warm-up, models alternating call by call; load average "
        f"{report['machine']['loadavg_start']} at the start, {report['machine']['loadavg_end']} at the end. "
        "Ratio: latency / the uniform student's on the same path and shape. Paths: eager PyTorch fp32 (SDPA); ort: "
        "hf_bort's export (torch.onnx dynamo) in ONNX Runtime with all graph optimisations; ort-fused: the TorchScript "
        "exporter's graph after onnxruntime.transformers.optimizer, each fused Attention node's num_heads set from its "
        "own weight (as fused, every node gets the one num_heads the optimizer is given).",
        "",
        "| student | heads | FFN | GFLOPs (1x128) | path | " + " | ".join(report["settings"]["shapes"]) + " |",
        "|---|---|---|---|---|" + "---|" * len(report["settings"]["shapes"]),
    ]
    for name, student in report["students"].items():
        for route, by_shape in student["latency"].items():
            cells = [f"{v['median_ms']:.2f} ms ({v['ratio_to_uniform']:.2f}x)" for v in by_shape.values()]
            lines.append(
                f"| {name} | {student['heads']} | {student['ffn']} | {student['gflops']:.3f} | {route} | "
                + " | ".join(cells)
                + " |"
            )
    lines += ["", "## Fusion (ONNX Runtime contrib ops; Attention num_heads; max |ONNX Runtime - eager|)", ""]
    for name, student in report["students"].items():
        lines.append(f"- **{name}**: " + "; ".join(f"{k}: {v}" for k, v in student["fusion"].items()))
    path.write_text("\n".join(lines) + "\n")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = report["settings"]["shapes"]
    fig, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 3.8), squeeze=False)
    names = list(report["students"])
    for ax, shape in zip(axes[0], shapes):
        for offset, route in enumerate(PATHS):
            values = [
                report["students"][n]["latency"].get(route, {}).get(shape, {}).get("median_ms", np.nan) for n in names
            ]
            ax.bar(np.arange(len(names)) + (offset - 1) * 0.27, values, width=0.27, label=route)
        ax.set_xticks(np.arange(len(names)), names)
        ax.set_title(f"{shape}, {report['settings']['threads']} thread(s)")
        ax.set_ylabel("median ms")
    axes[0][0].legend()
    fig.suptitle("Same FLOPs, uneven layers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    scale = QUICK_SCALE if args.quick else 1
    head_dim = HEAD_DIM // scale
    load_start = os.getloadavg()
    models, report = {}, {}
    for name, (heads, ffn) in STUDENTS.items():
        assert sum(heads) == sum(STUDENTS["uniform"][0]) and sum(ffn) == sum(STUDENTS["uniform"][1]), name
        torch.manual_seed(0)
        models[name] = BortModel._from_config(student_config(heads, ffn, scale), attn_implementation="sdpa").eval()
        report[name] = {
            "heads": heads,
            "ffn": [f // scale for f in ffn],
            "parameters": sum(p.numel() for p in models[name].parameters()),
            "gflops": forward_gflops(models[name], 1, 128),
        }
    graphs = {"ort": {}, "ort-fused": {}}
    with tempfile.TemporaryDirectory() as work:
        for name, model in models.items():
            report[name]["fusion"], fused = fusion(name, model, Path(work), head_dim)
            graphs["ort"][name] = Path(work) / f"{name}.onnx"
            if fused is not None:
                graphs["ort-fused"][name] = fused
            print(f"{name}: {report[name]['fusion']}")
        for name in models:
            report[name]["latency"] = {}
        # ort-fused only where every student's attention fused (else its ratios would compare different paths)
        paths = [p for p in PATHS if p != "ort-fused" or len(graphs["ort-fused"]) == len(models)]
        for path in paths:
            calls = runners(models, graphs, path, args.threads)
            for batch, length in args.shapes:
                shape = f"{batch}x{length}"
                with torch.inference_mode():
                    timed = time_alternating(calls, _inputs(batch, length), args.warmup, args.repeats)
                for name, values in timed.items():
                    report[name]["latency"].setdefault(path, {})[shape] = values
    for student in report.values():
        for path, by_shape in student["latency"].items():
            for shape, values in by_shape.items():
                values["ratio_to_uniform"] = (
                    values["median_ms"] / report["uniform"]["latency"][path][shape]["median_ms"]
                )
    result = {
        "settings": {
            "threads": args.threads,
            "shapes": [f"{b}x{n}" for b, n in args.shapes],
            "repeats": args.repeats,
            "warmup": args.warmup,
            "quick": args.quick,
            "hidden": HIDDEN // scale,
            "head_dim": head_dim,
        },
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "loadavg_start": [round(v, 2) for v in load_start],
            "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        },
        "students": report,
    }
    print(f"\n{'student':10} {'path':10} " + " ".join(f"{s:>16}" for s in result["settings"]["shapes"]))
    for name, student in report.items():
        for path, by_shape in student["latency"].items():
            cells = " ".join(f"{v['median_ms']:8.2f} ({v['ratio_to_uniform']:.2f}x)" for v in by_shape.values())
            print(f"{name:10} {path:10} {cells}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "heterogeneous_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.output_dir / "heterogeneous_latency.md")
    plot(result, args.output_dir / "heterogeneous_latency.png")
    print(f"wrote {args.output_dir}/heterogeneous_latency.{{json,md,png}}")
    return result


if __name__ == "__main__":
    main()
