"""CPU latency of Bort against BERT-base and BERT-large, side by side, on every fast inference path.

The paper's headline is that Bort runs 7.9x faster than BERT-base and 20x faster than BERT-large on CPU.
One run of this script measures, with the same inputs and a fixed thread count:

- headline: Bort (released dims), BERT-base and BERT-large (random weights: speed does not depend on them);
  paths: PyTorch eager fp32 with SDPA, torch.compile (Inductor, frozen weights), PyTorch dynamic int8,
  PyTorch bf16 (the CPU has AVX512-BF16 here), ONNX Runtime fp32 (full graph optimisations) and int8;
- parity: `BortModel` against `transformers.BertModel` at identical dims and identical weights (goal <= 1.0);
- student: the real MiniLM-L6 parent against a student extracted from it (OSE when `hf_bort.ose` is
  available, else a clearly labelled first-k-layers fallback).

Each (model, path) runs in its own subprocess so its peak memory (VmHWM during the timed runs, minus the
interpreter's baseline) is its own. Latency is the median of the timed runs after warm-up. Every fast path's
output on a fixed check input is compared with eager's. Writes `cpu_latency.json` and `cpu_latency.png`
(latency against sequence length at batch 1) into `--out-dir`.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/cpu_latency.py --threads 1 --out-dir /tmp/bench
    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/cpu_latency.py --quick   # two shapes, fewer paths, 3 repeats
"""

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hf_bort.testing import offline_minilm_dir


REPO_ROOT = Path(__file__).resolve().parents[1]
HEADLINE_SHAPES = [(1, 128), (8, 128), (32, 128), (1, 512)]
SWEEP_SHAPES = [(1, 32), (1, 64), (1, 256)]  # with the batch-1 headline shapes: latency against length
PARITY_SHAPES = [(1, 128), (8, 128)]
QUICK_SHAPES = [(1, 32), (1, 128), (8, 128)]
CHECK_SHAPE = (2, 128)
TORCH_PATHS = ("eager", "compile", "torch-int8", "bf16")
ONNX_PATHS = ("onnx", "onnx-int8")
STUDENT_ARCH = {"depth": 3, "heads": 6, "hidden": 384, "intermediate": 768}  # from MiniLM's 6/12/384/1536


# ----------------------------------------------------------------------------------------------- models


def _bert_config(**dims):
    from transformers import BertConfig

    return BertConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **dims)


def _bort_dims_as_bert():
    """Bort's released dims in BERT's config: the twin for the parity rows."""
    from hf_bort import BortConfig

    bort = BortConfig()
    return _bert_config(
        vocab_size=bort.vocab_size,
        hidden_size=bort.hidden_size,
        num_hidden_layers=bort.num_hidden_layers,
        num_attention_heads=bort.num_attention_heads,
        intermediate_size=bort.intermediate_size,
        max_position_embeddings=bort.max_position_embeddings,
        layer_norm_eps=bort.layer_norm_eps,
        pad_token_id=bort.pad_token_id,
        type_vocab_size=1,
    )


def _bort_from_bert(bert):
    """A BortModel holding exactly the BertModel's weights (token type 0 folded into positions)."""
    from hf_bort import BortModel
    from hf_bort.convert import bert_state_dict_to_bort, bort_config_from_bert

    state = {k.removeprefix("bort."): v for k, v in bert_state_dict_to_bort(bert.state_dict(), prefix="").items()}
    bort = BortModel(bort_config_from_bert(bert.config))
    bort.load_state_dict(state, strict=True)
    return bort


def _student(parent):
    """The student extracted from MiniLM: OSE if hf_bort.ose provides it, else the first k layers."""
    try:
        from hf_bort.ose import Architecture, extract_subnetwork
    except ImportError as error:
        from transformers import BertModel

        config = parent.config.__class__(**{**parent.config.to_dict(), "num_hidden_layers": STUDENT_ARCH["depth"]})
        student = BertModel(config, add_pooling_layer=False)
        missing, _ = student.load_state_dict(parent.state_dict(), strict=False)
        assert not missing, missing
        layers = f"{STUDENT_ARCH['depth']} of {parent.config.num_hidden_layers}"
        return student, f"fallback: first {layers} MiniLM layers, full width ({error})"
    architecture = Architecture(**STUDENT_ARCH)
    student = extract_subnetwork(parent, architecture, as_bort=True)
    return student, f"OSE: hf_bort.ose.extract_subnetwork(MiniLM, {architecture}, as_bort=True)"


def build_model(name: str):
    """Returns (model in eval mode, note). Random weights are seeded: every worker builds the same model."""
    import torch
    from transformers import BertModel

    import hf_bort

    torch.manual_seed(0)
    note = ""
    if name == "bort":
        model = hf_bort.BortModel(hf_bort.BortConfig(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    elif name == "bert-base":
        model = BertModel(_bert_config(), add_pooling_layer=False)
    elif name == "bert-large":
        dims = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
        model = BertModel(_bert_config(**dims), add_pooling_layer=False)
    elif name == "bert@bort-dims":
        model = BertModel(_bort_dims_as_bert(), add_pooling_layer=False)
    elif name == "bort@same-weights":
        model = _bort_from_bert(BertModel(_bort_dims_as_bert(), add_pooling_layer=False))
    elif name == "minilm":
        model = BertModel.from_pretrained(offline_minilm_dir(), add_pooling_layer=False)
    elif name == "minilm-student":
        model, note = _student(BertModel.from_pretrained(offline_minilm_dir(), add_pooling_layer=False))
    else:
        raise ValueError(f"unknown model {name!r}")
    return model.eval(), note


# ----------------------------------------------------------------------------------------------- worker


def _memory_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_memory() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM, so the peak is measured per shape."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _inputs(batch: int, length: int, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(999, 20000, (batch, length), generator=generator)  # valid in every vocab here
    return input_ids, torch.ones_like(input_ids)


def _onnx_file(out_dir: Path, model: str, path: str) -> Path:
    return out_dir / "onnx" / f"{model}.{path}.onnx"


def prepare_onnx(model_name: str, path: str, out_dir: Path) -> dict:
    """Export (and quantize) once, in its own process, so the timing worker holds only the ONNX session."""
    from hf_bort.export import export_onnx, quantize_onnx_int8

    fp32 = _onnx_file(out_dir, model_name, "onnx")
    info = {}
    if not fp32.is_file():
        model, _ = build_model(model_name)
        started = time.perf_counter()
        export_onnx(model, fp32)
        info["export_s"] = round(time.perf_counter() - started, 1)
        del model
    if path == "onnx-int8" and not _onnx_file(out_dir, model_name, path).is_file():
        started = time.perf_counter()
        quantize_onnx_int8(fp32, _onnx_file(out_dir, model_name, path))
        info["quantize_s"] = round(time.perf_counter() - started, 1)
    return info


def _runner(model_name: str, path: str, threads: int, out_dir: Path):
    """Builds one path; returns (callable(input_ids, attention_mask) -> main output tensor, note)."""
    import torch

    if path in ONNX_PATHS:
        from hf_bort.export import OnnxEncoder

        encoder = OnnxEncoder(_onnx_file(out_dir, model_name, path), num_threads=threads)
        return (lambda ids, mask: encoder(ids, mask).last_hidden_state), ""
    model, note = build_model(model_name)
    if path == "compile":
        from hf_bort.export import compile_for_cpu

        model = compile_for_cpu(model)
    elif path == "bf16":
        model = model.to(torch.bfloat16)
    elif path == "torch-int8":
        from hf_bort.export import quantize_dynamic_int8

        model = quantize_dynamic_int8(model)
    return (lambda ids, mask: model(input_ids=ids, attention_mask=mask).last_hidden_state), note


def run_worker(spec: dict) -> dict:
    """Times one (model, path) over its shapes in this process; prints one JSON line."""
    import numpy as np
    import onnxruntime  # noqa: F401  (every library is loaded before the baseline: peak memory is the path's own)
    import torch
    import transformers  # noqa: F401

    import hf_bort.export  # noqa: F401

    threads, out_dir = spec["threads"], Path(spec["out_dir"])
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    gc.collect()
    baseline_kb = _memory_kb("VmRSS")
    started = time.perf_counter()
    run, note = _runner(spec["model"], spec["path"], threads, out_dir)
    result = {**spec, "note": note, "build_s": round(time.perf_counter() - started, 2), "shapes": {}}
    with torch.inference_mode():
        check_ids, _ = _inputs(*CHECK_SHAPE, seed=1)
        check_mask = torch.ones_like(check_ids)
        check_mask[0, CHECK_SHAPE[1] // 2 :] = 0  # padding exercised in the output check
        started = time.perf_counter()
        check = run(check_ids, check_mask).float().numpy()
        result["first_call_s"] = round(time.perf_counter() - started, 2)  # includes torch.compile's compilation
        np.save(out_dir / "check" / f"{spec['model']}.{spec['path']}.npy", check)
        for batch, length in spec["shapes"]:
            input_ids, attention_mask = _inputs(batch, length)
            for _ in range(spec["warmup"]):
                run(input_ids, attention_mask)
            gc.collect()
            _reset_peak_memory()
            times, cpu_times = [], []
            while len(times) < spec["repeats"] and (len(times) < 3 or sum(times) < spec["budget_s"]):
                tic, cpu_tic = time.perf_counter(), time.process_time()
                run(input_ids, attention_mask)
                times.append(time.perf_counter() - tic)
                cpu_times.append(time.process_time() - cpu_tic)
            result["shapes"][f"{batch}x{length}"] = {
                "wall_ms": 1000 * statistics.median(times),
                "cpu_ms": 1000 * statistics.median(cpu_times),
                "runs": len(times),
                "peak_mb": (_memory_kb("VmHWM") - baseline_kb) / 1024,
            }
    return result


_OP_GROUPS = {  # aten op name fragments -> what they are in a transformer layer
    "GEMM (linear)": ("addmm", "aten::mm", "linear", "matmul", "bmm"),
    "attention (SDPA)": ("scaled_dot_product", "flash_attention", "softmax"),
    "LayerNorm": ("layer_norm",),
    "GELU": ("gelu",),
    "embedding": ("embedding", "index_select"),
}


def run_profile(spec: dict) -> dict:
    """Where eager time goes: self CPU time of aten ops, grouped, for one model and shape."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(spec["threads"])
    model, _ = build_model(spec["model"])
    input_ids, attention_mask = _inputs(*spec["shape"])
    with torch.inference_mode():
        model(input_ids=input_ids, attention_mask=attention_mask)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            for _ in range(spec["repeats"]):
                model(input_ids=input_ids, attention_mask=attention_mask)
    events = [e for e in profiler.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    groups = dict.fromkeys([*_OP_GROUPS, "other"], 0.0)
    for event in events:
        group = next((g for g, keys in _OP_GROUPS.items() if any(k in event.key for k in keys)), "other")
        groups[group] += event.self_cpu_time_total
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
    return {
        **spec,
        "ms_per_forward": total / 1000 / spec["repeats"],
        "share": {g: t / total for g, t in groups.items()},
        "top_ops": {e.key: e.self_cpu_time_total / total for e in top},
    }


# ----------------------------------------------------------------------------------------------- driver


def _plan(args: argparse.Namespace) -> list[tuple[str, str, list[tuple[int, int]]]]:
    """(model, path, shapes) jobs in run order."""
    shapes = QUICK_SHAPES if args.quick else sorted(HEADLINE_SHAPES + SWEEP_SHAPES, key=lambda s: s[0] * s[1])
    bort_paths = ("eager", "onnx-int8") if args.quick else TORCH_PATHS + ONNX_PATHS
    baseline_paths = ("eager",) if args.quick else ("eager", "onnx-int8")
    student_paths = ("eager",) if args.quick else ("eager", "onnx-int8")
    jobs = [("bort", p, shapes) for p in bort_paths]
    jobs += [(m, p, shapes) for m in ("bert-base", "bert-large") for p in baseline_paths]
    jobs += [(m, "eager", PARITY_SHAPES) for m in ("bert@bort-dims", "bort@same-weights")]
    jobs += [(m, p, shapes) for m in ("minilm", "minilm-student") for p in student_paths]
    return [job for job in jobs if not args.only or job[0] in args.only]


def _subprocess(args: argparse.Namespace, mode: str, payload: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, __file__, mode, json.dumps(payload)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {payload.get('model')}/{payload.get('path')} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _max_abs_diff(out_dir: Path, model: str, path: str) -> float | None:
    import numpy as np

    reference, candidate = (out_dir / "check" / f"{model}.{p}.npy" for p in ("eager", path))
    if path == "eager" or not reference.is_file():
        return None
    return float(np.abs(np.load(candidate) - np.load(reference)).max())


def _print_tables(results: list[dict], out_dir: Path, metric: str) -> dict:
    rows = {(r["model"], r["path"]): r for r in results}
    print(f"\nLatency = median over timed runs; ratios and seq/s use {metric} (wall and CPU time both shown).")
    header = f"{'model':18s} {'path':10s} {'shape':>7s} {'wall ms':>9s} {'cpu ms':>9s} {'seq/s':>8s} {'peak MB':>8s}"
    print(header + " runs")
    for r in results:
        for shape, s in r["shapes"].items():
            throughput = int(shape.split("x")[0]) / (s[metric] / 1000)
            print(
                f"{r['model']:18s} {r['path']:10s} {shape:>7s} {s['wall_ms']:9.1f} {s['cpu_ms']:9.1f} "
                f"{throughput:8.1f} {s['peak_mb']:8.0f} {s['runs']:4d}"
            )
    print("\nOutput check against eager on a padded 2x128 input (max |difference| of the last hidden state):")
    for r in results:
        diff = _max_abs_diff(out_dir, r["model"], r["path"])
        if diff is not None:
            print(f"  {r['model']:18s} {r['path']:10s} {diff:.2e}   (first call {r['first_call_s']} s)")

    ratios: dict = {}

    def ratio(numerator, denominator, shape):
        a, b = rows.get(numerator), rows.get(denominator)
        if a is None or b is None or shape not in a["shapes"] or shape not in b["shapes"]:
            return None
        return a["shapes"][shape][metric] / b["shapes"][shape][metric]

    shapes = [f"{b}x{s}" for b, s in HEADLINE_SHAPES]
    bort_paths = [p for p in TORCH_PATHS + ONNX_PATHS if ("bort", p) in rows]
    print("\nSpeed-up of Bort = baseline eager fp32 latency / Bort latency (targets: BERT-large >= 13x eager, ")
    print(">= 20x best path; BERT-base >= 4x eager, >= 7.9x best path)")
    print(f"{'Bort path':12s} {'vs':22s} " + " ".join(f"{s:>8s}" for s in shapes))
    for baseline in ("bert-large", "bert-base"):
        for path in bort_paths:
            values = [ratio((baseline, "eager"), ("bort", path), s) for s in shapes]
            ratios[f"bort.{path}/vs/{baseline}.eager"] = dict(zip(shapes, values))
            cells = " ".join(f"{v:8.1f}" if v else f"{'-':>8s}" for v in values)
            print(f"{path:12s} {baseline + ' eager':22s} {cells}")
        if (baseline, "onnx-int8") in rows:
            values = [ratio((baseline, "onnx-int8"), ("bort", "onnx-int8"), s) for s in shapes]
            ratios[f"bort.onnx-int8/vs/{baseline}.onnx-int8"] = dict(zip(shapes, values))
            cells = " ".join(f"{v:8.1f}" if v else f"{'-':>8s}" for v in values)
            print(f"{'onnx-int8':12s} {baseline + ' onnx-int8 (same)':22s} {cells}")

    print("\nParity: BortModel / BertModel latency at identical dims and weights (goal <= 1.0):")
    for b, s in PARITY_SHAPES:
        value = ratio(("bort@same-weights", "eager"), ("bert@bort-dims", "eager"), f"{b}x{s}")
        ratios[f"parity.{b}x{s}"] = value
        if value is not None:
            print(f"  {b}x{s}: {value:.3f}")
    if ("minilm-student", "eager") in rows:
        print(f"\nStudent: {rows[('minilm-student', 'eager')]['note']}")
        print("Speed-up of the student over the MiniLM parent on the same path:")
        for path in ("eager", "onnx-int8"):
            values = [ratio(("minilm", path), ("minilm-student", path), s) for s in shapes]
            ratios[f"student.{path}"] = dict(zip(shapes, values))
            if any(values):
                print(f"  {path:10s} " + " ".join(f"{s}: {v:.2f}x" for s, v in zip(shapes, values) if v))
    return ratios


def _plot(results: list[dict], path: Path, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 6))
    colors = {model: f"C{i}" for i, model in enumerate(dict.fromkeys(r["model"] for r in results))}
    styles = dict(
        zip(TORCH_PATHS + ONNX_PATHS, [("-", "o"), ("--", "s"), (":", "v"), ("-.", "^"), ("-", "D"), ("--", "*")])
    )
    for r in results:
        points = sorted(
            (int(shape.split("x")[1]), s[metric]) for shape, s in r["shapes"].items() if shape.startswith("1x")
        )
        if len(points) > 1:
            line, marker = styles[r["path"]]
            label = f"{r['model']} / {r['path']}"
            axis.plot(*zip(*points), linestyle=line, marker=marker, color=colors[r["model"]], label=label)
    axis.set(
        xscale="log",
        yscale="log",
        xlabel="sequence length (batch 1)",
        ylabel=f"median latency, {metric.split('_')[0]} time (ms)",
    )
    axis.set_title(f"CPU latency, {results[0]['threads']} thread(s)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _profile(args: argparse.Namespace) -> dict:
    """torch.profiler op shares for eager Bort, BERT-base and BERT-large: what bounds the speed-up ratios."""
    report = {}
    for model in args.only or ("bort", "bert-base", "bert-large"):
        for shape in ((1, 128), (8, 128)):
            spec = {"model": model, "shape": shape, "threads": args.threads, "repeats": 3 if shape[0] == 1 else 1}
            result = _subprocess(args, "--profile-worker", spec)
            report[f"{model} {shape[0]}x{shape[1]}"] = result
            shares = ", ".join(f"{g} {100 * v:.0f}%" for g, v in result["share"].items())
            print(
                f"{model:10s} {shape[0]}x{shape[1]:<4d} {result['ms_per_forward']:8.1f} ms/forward (profiler wall clock) | {shares}"
            )
            print("           top ops: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in result["top_ops"].items()))
    (args.out_dir / "cpu_profile.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="Threads for PyTorch and ONNX Runtime (fixed).")
    parser.add_argument("--out-dir", type=Path, default=Path("cpu_latency_out"))
    parser.add_argument("--quick", action="store_true", help="Shapes 1x32, 1x128, 8x128, fewer paths, 3 repeats.")
    parser.add_argument("--repeats", type=int, default=None, help="Timed runs per shape (default 10; quick 3).")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=15.0, help="Stop repeating a shape after this (>= 3 runs).")
    parser.add_argument("--only", nargs="*", help="Run only these models (e.g. bort bert-base).")
    parser.add_argument(
        "--resume", action="store_true", help="Keep the (model, path) rows already in OUT_DIR/cpu_latency.json."
    )
    parser.add_argument("--profile", action="store_true", help="Profile eager Bort/BERT (op shares) instead.")
    parser.add_argument(
        "--metric",
        choices=["wall_ms", "cpu_ms"],
        default=None,
        help="What ratios use. Default: process CPU time with 1 thread (robust to other processes sharing the "
        "cores, and equal to latency on an idle core), wall time otherwise.",
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 10)
    (args.out_dir / "check").mkdir(parents=True, exist_ok=True)
    import torch

    print(
        f"threads: {args.threads} (torch and onnxruntime intra-op; OMP_NUM_THREADS={args.threads}) | "
        f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores | "
        f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}) | repeats <= {repeats}, "
        f"warm-up {args.warmup}, median reported"
    )
    if args.profile:
        return _profile(args)
    report_path = args.out_dir / "cpu_latency.json"
    results = json.loads(report_path.read_text())["results"] if args.resume and report_path.is_file() else []
    done = {(r["model"], r["path"]) for r in results if r["threads"] == args.threads}
    for model, path, shapes in _plan(args):
        if (model, path) in done:
            continue
        payload = {"model": model, "path": path, "out_dir": str(args.out_dir)}
        prepared = _subprocess(args, "--prepare", payload) if path in ONNX_PATHS else {}
        spec = {"model": model, "path": path, "shapes": shapes, "threads": args.threads, "repeats": repeats}
        spec.update(warmup=args.warmup, budget_s=args.budget_s, out_dir=str(args.out_dir))
        started = time.perf_counter()
        result = {**_subprocess(args, "--worker", spec), **prepared, "wall_s": round(time.perf_counter() - started)}
        summary = ", ".join(f"{k} {v['wall_ms']:.1f}/{v['cpu_ms']:.1f} ms" for k, v in result["shapes"].items())
        print(f"[{result['wall_s']:4d} s] {model} / {path} (wall/cpu): {summary}", flush=True)
        results.append(result)
        report_path.write_text(json.dumps({"threads": args.threads, "results": results}, indent=2))  # resumable
    order = [(model, path) for model, path, _ in _plan(args)]
    results.sort(
        key=lambda r: order.index((r["model"], r["path"])) if (r["model"], r["path"]) in order else len(order)
    )
    metric = args.metric or ("cpu_ms" if args.threads == 1 else "wall_ms")
    ratios = _print_tables(results, args.out_dir, metric)
    _plot(results, args.out_dir / "cpu_latency.png", metric)
    report = {"threads": args.threads, "quick": args.quick, "metric": metric, "results": results, "ratios": ratios}
    report_path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out_dir / 'cpu_latency.json'} and {args.out_dir / 'cpu_latency.png'}")
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("--worker", "--prepare", "--profile-worker"):
        payload = json.loads(sys.argv[2])
        if sys.argv[1] == "--worker":
            output = run_worker(payload)
        elif sys.argv[1] == "--profile-worker":
            output = run_profile(payload)
        else:
            output = prepare_onnx(payload["model"], payload["path"], Path(payload["out_dir"]))
        print(json.dumps(output))
    else:
        main()
