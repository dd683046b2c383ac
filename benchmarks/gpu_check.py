"""`make gpu-check`: hf_bort's GPU paths in one command on a CUDA machine, each checked against a reference.

1. model: Bort's masked LM (the released dims, and a heterogeneous student of them: per-layer heads and FFN widths,
   one layer without its FFN), forward and backward with SDPA in fp32 and bf16. fp32 SDPA must match the eager
   attention (logits and every gradient); bf16 must stay close to fp32.
2. extraction: `hf_bort.ose.extract_subnetwork` of the offline MiniLM-L6 on the GPU gives the weights the CPU gives.
3. search: a short `OSESearch` (ε = 1, at most 3 candidates) on WikiText-2 lines runs on the GPU and returns
   finite errors.
4. timing: Bort against transformers' `BertModel` of the same shape (random weights; speed does not depend on them),
   SDPA, fp32 and bf16, a few batch sizes at 128 tokens; the two models alternate call by call after warm-up, and
   each latency is the median (CUDA-synchronised wall time).

Prints the checks and a table and writes them as JSON. Without CUDA it exits with one line and code 2, unless
`--device cpu` is passed: the same code path on the CPU (CI has no GPU; tests/test_gpu_check.py runs it `--quick`).

    make gpu-check                                                   # python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --device cpu --quick --output /tmp/gpu_check.json
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoTokenizer, BertConfig, BertModel

from hf_bort import BortConfig, BortForMaskedLM, BortModel
from hf_bort.ose import Architecture, OSEConfig, OSESearch, extract_subnetwork, read_text_lines
from hf_bort.testing import offline_minilm_dir


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "gpu_check" / "gpu_check.json"
WIKITEXT = REPO_ROOT.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.valid.raw"
# The released Bort <4, 8, 1024, 768>, and --quick's tiny stand-in (same code path, seconds on a CPU).
FULL_DIMS = dict(hidden_size=1024, num_hidden_layers=4, num_attention_heads=8, intermediate_size=768)
QUICK_DIMS = dict(vocab_size=512, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96)
# A pruned student of the same dims: layer 0 keeps half the heads and FFN, layer 1 has 1.5x both, layer 3 no FFN.
HETEROGENEOUS = {
    0: {"num_attention_heads": 0.5, "intermediate_size": 0.5},
    1: {"num_attention_heads": 1.5, "intermediate_size": 1.5},
    3: {"skip": ["mlp"]},
}
EXTRACTED = Architecture(depth=3, heads=6, hidden=384, intermediate=768)  # from MiniLM's <6, 12, 384, 1536>
TOLERANCES = {
    "fp32 sdpa vs eager, logits max |diff|": 1e-4,
    "fp32 sdpa vs eager, gradients relative diff": 1e-3,
    "bf16 vs fp32, logits relative diff": 5e-2,
    "bf16 vs fp32, gradient cosine (min)": 0.9,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: the code path without a GPU")
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs (the CPU test)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="timed batch sizes (default 1 8 32)")
    parser.add_argument("--seq-len", type=int, default=None, help="timed tokens per row (default 128)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per model and shape (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per model and shape first")
    parser.add_argument("--wikitext", type=Path, default=WIKITEXT, help="text lines for the OSE search")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    quick = args.quick
    args.batch_sizes = args.batch_sizes or ([1, 2] if quick else [1, 8, 32])
    args.seq_len = args.seq_len or (16 if quick else 128)
    args.repeats = args.repeats or (3 if quick else 50)
    return args


def bort_config(dims: dict, per_layer: dict | None = None) -> BortConfig:
    """Bort of `dims`, without dropout; `per_layer` scales the heads and FFN widths of single layers."""
    layers = None
    if per_layer:
        layers = {
            i: {k: v if k == "skip" else max(1, round(v * dims[k])) for k, v in overrides.items()}
            for i, overrides in per_layer.items()
        }
    return BortConfig(**dims, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, per_layer_config=layers)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------- 1. model


def forward_backward(model, input_ids, attention_mask, labels) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits (fp32) and every parameter's gradient (fp32) of one masked-LM step."""
    model.zero_grad(set_to_none=True)
    output = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    output.loss.backward()
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        raise AssertionError(f"no gradient reached {missing[:3]} ({len(missing)} parameters)")
    return output.logits.detach().float(), grads


def check_model(name: str, config: BortConfig, device: torch.device, batch: int, length: int) -> dict:
    """One masked-LM step with SDPA in fp32 and in bf16, each against the same weights with eager attention in fp32."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.vocab_size, (batch, length), generator=generator).to(device)
    mask = torch.ones_like(ids)
    mask[-1, length // 2 :] = 0  # one padded row: the masked path of SDPA
    labels = torch.where(torch.rand(ids.shape, generator=generator).to(device) < 0.15, ids, -100)
    reference = BortForMaskedLM._from_config(config, attn_implementation="eager").to(device)
    eager_logits, eager_grads = forward_backward(reference, ids, mask, labels)
    results = {"model": name, "parameters": sum(p.numel() for p in reference.parameters())}
    # Some gradients are zero in exact arithmetic (a key bias shifts every score of a query alike, which the softmax
    # ignores) and rounding noise in practice: a gradient smaller than a thousandth of the largest is measured against
    # that thousandth, and left out of the cosines.
    floor = 1e-3 * max(g.norm().item() for g in eager_grads.values())
    for dtype in (torch.float32, torch.bfloat16):
        model = BortForMaskedLM._from_config(config, attn_implementation="sdpa").to(device)
        model.load_state_dict(reference.state_dict())
        model.to(dtype)
        assert model.config._attn_implementation == "sdpa"
        logits, grads = forward_backward(model, ids, mask, labels)
        if not (torch.isfinite(logits).all() and all(torch.isfinite(g).all() for g in grads.values())):
            raise AssertionError(f"{name} {dtype}: non-finite logits or gradients")
        if dtype == torch.float32:
            results["fp32 sdpa vs eager, logits max |diff|"] = (logits - eager_logits).abs().max().item()
            results["fp32 sdpa vs eager, gradients relative diff"] = max(
                (grads[n] - g).norm().item() / max(g.norm().item(), floor) for n, g in eager_grads.items()
            )
        else:
            results["bf16 vs fp32, logits relative diff"] = (
                (logits - eager_logits).norm() / eager_logits.norm()
            ).item()
            results["bf16 vs fp32, gradient cosine (min)"] = min(
                torch.nn.functional.cosine_similarity(grads[n].flatten(), g.flatten(), dim=0).item()
                for n, g in eager_grads.items()
                if g.norm() > floor
            )
    results["ok"] = all(
        results[k] >= bound if "cosine" in k else results[k] <= bound for k, bound in TOLERANCES.items()
    )
    return results


# ----------------------------------------------------------------------------------------------- 2. extraction


def check_extraction(device: torch.device) -> dict:
    """The child extracted on `device` holds exactly the weights the CPU extraction gives, and runs there."""
    parent = BertModel.from_pretrained(offline_minilm_dir()).eval()
    on_cpu = extract_subnetwork(parent, EXTRACTED)
    on_device = extract_subnetwork(parent.to(device), EXTRACTED)
    cpu_state = on_cpu.state_dict()
    diff = max((t.cpu() - cpu_state[n]).abs().max().item() for n, t in on_device.state_dict().items())
    ids = torch.randint(1000, 20000, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = on_device(input_ids=ids.to(device)).last_hidden_state.cpu()
        reference = on_cpu(input_ids=ids).last_hidden_state
    return {
        "architecture": str(EXTRACTED),
        "child": type(on_device).__name__,
        "child device": str(next(on_device.parameters()).device),
        "weights max |diff| vs cpu": diff,
        "hidden states max |diff| vs cpu": (out - reference).abs().max().item(),
        "ok": diff == 0.0 and next(on_device.parameters()).device.type == device.type,
    }


# ----------------------------------------------------------------------------------------------- 3. search


def check_search(device: torch.device, wikitext: Path, quick: bool) -> dict:
    """A short OSE search; OSE runs on the device Accelerate gives the process (with --device cpu: the CPU)."""
    if device.type == "cpu":
        from accelerate import PartialState

        PartialState(cpu=True)  # the shared state OSE reads: the CPU even where a GPU exists
    minilm = offline_minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    if quick:
        torch.manual_seed(0)
        tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
        parent = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **tiny))
    else:
        parent = BertModel.from_pretrained(minilm)
    texts = read_text_lines(wikitext)[: 24 if quick else 96]
    settings = dict(epsilon=1.0, max_candidates=3, max_steps=4 if quick else 20, seq_len=32 if quick else 64)
    search = OSESearch(parent, OSEConfig(**settings, show_progress=False), train_dataset=texts, tokenizer=tokenizer)
    started = time.perf_counter()
    result = search.run()
    seconds = time.perf_counter() - started
    errors = [r.error for r in result.records]
    return {
        "settings": settings,
        "texts": len(texts),
        "ran on": str(search.device),
        "evaluated": [str(r.architecture) for r in result.records],
        "errors": errors,
        "best": str(result.best),
        "seconds": round(seconds, 1),
        "ok": search.device.type == device.type and 1 <= len(errors) <= 3 and all(math.isfinite(e) for e in errors),
    }


# ----------------------------------------------------------------------------------------------- 4. timing


@torch.inference_mode()
def time_side_by_side(models: dict, device: torch.device, batch: int, length: int, warmup: int, repeats: int):
    """Median ms per call of each model, the models alternating call by call so a change of load hits them all."""
    vocab = min(model.config.vocab_size for model in models.values())
    ids = torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(0)).to(device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    for _ in range(warmup):
        for model in models.values():
            model(**inputs)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            _synchronize(device)
            start = time.perf_counter()
            model(**inputs)
            _synchronize(device)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def timing(dims: dict, device: torch.device, args) -> list[dict]:
    """Bort against `BertModel` of Bort's shape (no token types: type_vocab_size 1, no pooler), both with SDPA."""
    torch.manual_seed(0)
    bort = BortModel._from_config(bort_config(dims), attn_implementation="sdpa")
    shape = ("vocab_size", *FULL_DIMS, "max_position_embeddings", "layer_norm_eps", "pad_token_id")
    bert_config = BertConfig(
        **{k: getattr(bort.config, k) for k in shape},
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    bert = BertModel._from_config(bert_config, attn_implementation="sdpa", add_pooling_layer=False)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        models = {"bort": bort.to(device, dtype).eval(), "bert": bert.to(device, dtype).eval()}
        for batch in args.batch_sizes:
            ms = time_side_by_side(models, device, batch, args.seq_len, args.warmup, args.repeats)
            rows.append(
                {
                    "dtype": str(dtype).removeprefix("torch."),
                    "shape": f"{batch}x{args.seq_len}",
                    "bort_ms": round(ms["bort"], 4),
                    "bert_ms": round(ms["bert"], 4),
                    "bert / bort": round(ms["bert"] / ms["bort"], 3),
                }
            )
    return rows


# ----------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: error: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine, "
            "or pass --device cpu to run the same code path on the CPU.",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("highest")  # no TF32: fp32 means fp32 in the parity checks and timings
    dims = QUICK_DIMS if args.quick else {"vocab_size": BortConfig().vocab_size, **FULL_DIMS}
    batch, length = (2, 16) if args.quick else (8, 128)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "quick": args.quick,
        "tolerances": TOLERANCES,
        "model": [
            check_model("bort", bort_config(dims), device, batch, length),
            check_model("bort, heterogeneous", bort_config(dims, HETEROGENEOUS), device, batch, length),
        ],
    }
    for row in report["model"]:
        print(f"model {row['model']}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k in TOLERANCES))
    report["extraction"] = check_extraction(device)
    print(f"extraction {report['extraction']}")
    report["search"] = check_search(device, args.wikitext, args.quick)
    print(f"search {report['search']}")
    report["timing"] = timing(dims, device, args)
    print(f"\n{'dtype':9} {'shape':8} {'bort ms':>9} {'bert ms':>9} {'bert/bort':>9}")
    for row in report["timing"]:
        print(
            f"{row['dtype']:9} {row['shape']:8} {row['bort_ms']:9.3f} {row['bert_ms']:9.3f} {row['bert / bort']:9.2f}"
        )
    checks = {"model": all(r["ok"] for r in report["model"]), **{k: report[k]["ok"] for k in ("extraction", "search")}}
    report["passed"] = all(checks.values())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'passed' if report['passed'] else 'FAILED: ' + str(checks)}; wrote {args.output}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
