"""What int8 dynamic quantization costs in accuracy on a real GLUE dev set.

Fine-tunes the offline MiniLM-L6 (a real pretrained BERT) briefly on SST-2 (cached after the first run), then
scores the official SST-2 dev set (872 sentences) with fp32 eager PyTorch, PyTorch dynamic int8, ONNX Runtime
fp32 and ONNX Runtime int8 (per-tensor and per-channel weight scales), and PyTorch bf16 for comparison. The
target is an int8 cost of at most one accuracy point.

    HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/int8_accuracy.py --work-dir /tmp/int8 --threads 1
"""

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, BertForSequenceClassification


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED = Path(os.environ.get("HF_BORT_SHARED", REPO_ROOT.parent / "shared"))

from hf_bort.export import OnnxEncoder, export_onnx, quantize_dynamic_int8, quantize_onnx_int8  # noqa: E402
from hf_bort.glue import load_glue  # noqa: E402
from hf_bort.testing import offline_minilm_dir  # noqa: E402


def _pad(tokenizer, texts: list[str], max_length: int) -> dict:
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="longest")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def fine_tune(args: argparse.Namespace, glue_dir: Path, output_dir: Path) -> None:
    """One short epoch on a seeded sample of SST-2 train: enough for a real, well-above-chance classifier."""
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.parent)
    model = BertForSequenceClassification.from_pretrained(args.parent, num_labels=2)
    train = (
        load_glue("sst2", glue_dir, splits=("train",))["train"].shuffle(seed=args.seed).select(range(args.train_rows))
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    steps = (len(train) + args.batch_size - 1) // args.batch_size
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    model.train()
    for start in tqdm(range(0, len(train), args.batch_size), total=steps, desc="fine-tune SST-2"):
        rows = train[start : start + args.batch_size]
        batch = {k: torch.tensor(v) for k, v in _pad(tokenizer, rows["sentence"], args.max_length).items()}
        loss = model(**batch, labels=torch.tensor(rows["label"])).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)


def _predict(run, batches: list[dict], desc: str) -> tuple[np.ndarray, float]:
    predictions, started = [], time.perf_counter()
    with torch.inference_mode():
        for batch in tqdm(batches, desc=desc, leave=False):
            predictions.append(run(batch).argmax(-1).numpy())
    return np.concatenate(predictions), time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, required=True, help="Caches the fine-tuned model and ONNX files.")
    parser.add_argument("--glue-dir", type=Path, default=SHARED / "data" / "glue")
    parser.add_argument("--parent", type=Path, default=None, help="Default: the offline MiniLM-L6.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-rows", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.parent = args.parent or offline_minilm_dir()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    print(f"torch threads: {torch.get_num_threads()}")

    finetuned = args.work_dir / "sst2-minilm"
    if not (finetuned / "config.json").is_file():
        started = time.perf_counter()
        fine_tune(args, args.glue_dir, finetuned)
        print(f"fine-tuned in {time.perf_counter() - started:.0f} s -> {finetuned}")
    else:
        print(f"using the cached fine-tuned model at {finetuned}")
    model = BertForSequenceClassification.from_pretrained(finetuned).eval()
    tokenizer = AutoTokenizer.from_pretrained(finetuned)
    dev = load_glue("sst2", args.glue_dir, splits=("validation",))["validation"]
    # Batches of 32 padded to their longest sentence, as a served model would see them.
    batches = [
        {k: torch.tensor(v) for k, v in _pad(tokenizer, dev["sentence"][s : s + 32], 128).items()}
        for s in range(0, len(dev), 32)
    ]
    labels = np.array(dev["label"])

    onnx_fp32 = args.work_dir / "sst2-minilm.onnx"
    if not onnx_fp32.is_file():
        export_onnx(model, onnx_fp32)
    onnx_int8 = quantize_onnx_int8(
        onnx_fp32, args.work_dir / "sst2-minilm-int8-per-tensor.onnx", per_channel=False, overwrite=True
    )
    onnx_int8_pc = quantize_onnx_int8(onnx_fp32, args.work_dir / "sst2-minilm-int8.onnx", overwrite=True)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)

    def torch_path(m):
        return lambda batch: m(**batch).logits

    def onnx_path(path):
        encoder = OnnxEncoder(path, num_threads=args.threads)
        return lambda batch: encoder(batch["input_ids"], batch["attention_mask"]).logits

    paths = {
        "pytorch fp32 (eager)": torch_path(model),
        "pytorch int8 per-tensor": torch_path(quantize_dynamic_int8(model, per_channel=False)),
        "pytorch int8 per-channel": torch_path(quantize_dynamic_int8(model)),
        "pytorch bf16": lambda batch: bf16(**batch).logits.float(),
        "onnxruntime fp32": onnx_path(onnx_fp32),
        "onnxruntime int8 per-tensor": onnx_path(onnx_int8),
        "onnxruntime int8 per-channel": onnx_path(onnx_int8_pc),
    }
    results, reference = {}, None
    for name, run in paths.items():
        predictions, seconds = _predict(run, batches, name)
        reference = predictions if reference is None else reference
        results[name] = {
            "accuracy": float((predictions == labels).mean()),
            "agreement_with_fp32": float((predictions == reference).mean()),
            "seconds": round(seconds, 2),
        }
    base = results["pytorch fp32 (eager)"]["accuracy"]
    print(f"\nSST-2 dev ({len(labels)} sentences), MiniLM-L6 fine-tuned on {args.train_rows} train rows, 1 epoch")
    print(f"{'path':32s} {'accuracy':>9s} {'delta (pts)':>12s} {'agree fp32':>11s} {'time s':>8s}")
    for name, r in results.items():
        delta = 100 * (r["accuracy"] - base)
        print(f"{name:32s} {r['accuracy']:9.4f} {delta:+12.2f} {r['agreement_with_fp32']:11.4f} {r['seconds']:8.2f}")
    summary = {"threads": args.threads, "train_rows": args.train_rows, "dev_size": len(labels), "results": results}
    (args.work_dir / "int8_accuracy.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
