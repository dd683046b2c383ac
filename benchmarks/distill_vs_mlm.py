# Copyright 2026 The hf_bort developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
"""Distillation vs masked-LM alone, at the same step budget, then SST-2 fine-tuning of both students.

Pretrains the same randomly initialised Bort-shaped student twice with `recipes/pretrain.py` on WikiText-2 valid
(held out: WikiText-2 test), once with masked-LM only and once distilled from the offline MiniLM-L6 (no MLM head, so
hidden-state distillation), then fine-tunes each on a slice of SST-2 train and scores the official dev set.

    python benchmarks/distill_vs_mlm.py            # the evidence run (about 40 min on one busy CPU thread)
    python benchmarks/distill_vs_mlm.py --quick    # a smoke run in a few minutes
    python benchmarks/distill_vs_mlm.py --logit_kd # also: train MiniLM an MLM head, then Bort's logit distillation
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hf_bort.testing import offline_minilm_dir


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_BORT_SHARED", REPO.parent / "shared"))


def pretrain(objective: str, out: Path, opts: argparse.Namespace, teacher: Path | None = None, *extra: str) -> dict:
    """Run the recipe in a fresh process (one thread) and return its held-out losses."""
    wiki = SHARED / "data" / "wikitext-2-raw"
    command = [
        sys.executable, str(REPO / "recipes" / "pretrain.py"), "--objective", objective,
        "--teacher", str(teacher or offline_minilm_dir()),
        "--train_file", str(wiki / "wiki.valid.raw"), "--eval_file", str(wiki / "wiki.test.raw"),
        "--output_dir", str(out), "--overwrite", "--student_layers", "4", "--student_heads", "8",
        "--student_hidden", "256", "--student_intermediate", "768", "--block_size", "128",
        "--max_steps", str(opts.steps), "--per_device_train_batch_size", "8", "--max_eval_blocks", str(opts.eval_blocks),
        "--mlm_weight", "1.0", "--hidden_weight", "1.0", "--learning_rate", "5e-4", "--warmup_steps", "0.06",
        "--logging_steps", "25", "--save_steps", str(10 * opts.steps), "--seed", "0", "--disable_tqdm", "true", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    results = json.loads((out / "held_out_losses.json").read_text())
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    return results


def train_teacher_head(out: Path, opts: argparse.Namespace) -> dict:
    """Give MiniLM an MLM head: train BERT's head (transform + bias; decoder tied to the frozen embeddings) on its
    frozen body, on the same training text, so that the teacher has logits for Bort's logit distillation."""
    import torch
    from transformers import AutoTokenizer, BertForMaskedLM, Trainer, TrainingArguments, set_seed

    sys.path.insert(0, str(REPO))
    from hf_bort.text_data import MaskedLMCollator, load_text, mask_once, pack_into_blocks

    torch.set_num_threads(1)
    set_seed(0)
    wiki = SHARED / "data" / "wikitext-2-raw"
    tokenizer = AutoTokenizer.from_pretrained(offline_minilm_dir())
    teacher = BertForMaskedLM.from_pretrained(offline_minilm_dir())
    teacher.bert.requires_grad_(False)
    train = pack_into_blocks(load_text(wiki / "wiki.valid.raw"), tokenizer, 128)
    held_out = pack_into_blocks(load_text(wiki / "wiki.test.raw"), tokenizer, 128, max_blocks=opts.eval_blocks)
    args = TrainingArguments(
        output_dir=str(out), max_steps=opts.head_steps, learning_rate=1e-3, per_device_train_batch_size=8,
        per_device_eval_batch_size=32, warmup_steps=0.06, seed=0, report_to="none", save_strategy="no",
        logging_steps=25, disable_tqdm=True, use_cpu=True, prediction_loss_only=True, remove_unused_columns=False,
    )  # fmt: skip
    trainer = Trainer(
        model=teacher, args=args, train_dataset=train, eval_dataset=mask_once(held_out, tokenizer, 0.15, seed=0),
        data_collator=MaskedLMCollator(tokenizer), processing_class=tokenizer,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    result = {
        "held_out_mlm_loss": trainer.evaluate()["eval_loss"],
        "steps": opts.head_steps,
        "seconds": round(seconds),
    }
    trainer.save_model(str(out))
    return result


def finetune_sst2(student_dir: Path, opts: argparse.Namespace, pretrained: bool = True) -> dict:
    """Fine-tune a student on `opts.sst2_rows` SST-2 train rows for one epoch; dev accuracy.

    With `pretrained=False` the same architecture starts from a random initialisation: the untrained baseline.
    """
    import torch
    from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    sys.path.insert(0, str(REPO))
    from hf_bort import BortConfig, BortForSequenceClassification
    from hf_bort.glue import load_glue

    torch.set_num_threads(1)
    data = load_glue("sst2", SHARED / "data" / "glue", splits=("train", "validation"))
    train = data["train"].shuffle(seed=0).select(range(opts.sst2_rows))
    tokenizer = AutoTokenizer.from_pretrained(student_dir)

    def encode(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=64, return_token_type_ids=False)

    train = train.map(encode, batched=True, remove_columns=["sentence", "idx"])
    dev = data["validation"].map(encode, batched=True, remove_columns=["sentence", "idx"])
    if pretrained:
        model = BortForSequenceClassification.from_pretrained(student_dir, num_labels=2)
    else:
        set_seed(0)
        model = BortForSequenceClassification(BortConfig.from_pretrained(student_dir, num_labels=2))
    args = TrainingArguments(
        output_dir=str(student_dir / "sst2"), num_train_epochs=1, learning_rate=opts.sst2_lr, per_device_train_batch_size=16,
        per_device_eval_batch_size=64, warmup_steps=0.1, seed=0, report_to="none", save_strategy="no",
        logging_steps=50, disable_tqdm=True, use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    predictions = trainer.predict(dev)
    accuracy = float((np.argmax(predictions.predictions, -1) == predictions.label_ids).mean())
    return {"dev_accuracy": accuracy, "dev_rows": len(dev), "train_rows": len(train), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Tiny budget: a smoke test, not evidence.")
    parser.add_argument("--output_dir", type=Path, default=Path("runs/distill_vs_mlm"))
    parser.add_argument("--steps", type=int, default=200, help="Pretraining steps for both students.")
    parser.add_argument("--eval_blocks", type=int, default=200, help="Held-out WikiText-2 test blocks.")
    parser.add_argument("--sst2_rows", type=int, default=4000, help="SST-2 train rows for fine-tuning.")
    parser.add_argument("--sst2_lr", type=float, default=3e-4, help="Fine-tuning learning rate.")
    parser.add_argument("--sst2_only", action="store_true", help="Reuse the students pretrained in --output_dir.")
    parser.add_argument(
        "--logit_kd", action="store_true", help="Also train MiniLM an MLM head and distil logits with Bort's loss."
    )
    parser.add_argument("--head_steps", type=int, default=150, help="Steps to train the teacher's MLM head.")
    opts = parser.parse_args()
    if opts.quick:
        opts.steps, opts.eval_blocks, opts.sst2_rows, opts.head_steps = 10, 16, 128, 5
    opts.output_dir.mkdir(parents=True, exist_ok=True)

    results = opts.output_dir / "results.json"
    report = (
        json.loads(results.read_text()) if opts.sst2_only else {"steps": opts.steps, "eval_blocks": opts.eval_blocks}
    )
    report.update(sst2_rows=opts.sst2_rows, sst2_lr=opts.sst2_lr)
    for objective in ("mlm", "distill"):
        student_dir = opts.output_dir / f"student-{objective}"
        if not opts.sst2_only:
            report[objective] = pretrain(objective, student_dir, opts)
        report[objective]["sst2"] = finetune_sst2(student_dir, opts)
        results.write_text(json.dumps(report, indent=2) + "\n")
    if opts.logit_kd:
        head_dir, student_dir = opts.output_dir / "teacher-with-head", opts.output_dir / "student-logits"
        if not (opts.sst2_only and "logits" in report):
            report["teacher_head"] = train_teacher_head(head_dir, opts)
            bort_loss = ("--mlm_weight", "0.1", "--kd_weight", "0.5", "--temperature", "2.0")
            report["logits"] = pretrain("distill", student_dir, opts, head_dir, *bort_loss)
        report["logits"]["sst2"] = finetune_sst2(student_dir, opts)
        results.write_text(json.dumps(report, indent=2) + "\n")
    report["untrained_sst2"] = finetune_sst2(opts.output_dir / "student-mlm", opts, pretrained=False)
    results.write_text(json.dumps(report, indent=2) + "\n")

    untrained = report["mlm"]["untrained"]["mlm_loss"]
    print(f"\nHeld-out losses on WikiText-2 test ({report['eval_blocks']} blocks of 128), {report['steps']} steps;")
    print(f"SST-2 dev accuracy after 1 epoch on {opts.sst2_rows} train rows (lr {opts.sst2_lr}):")
    print(f"{'student':<22}{'MLM loss':>10}{'hidden KD loss':>16}{'SST-2 dev acc':>15}{'pretrain s':>12}")
    print(
        f"{'untrained':<22}{untrained:>10.3f}{report['distill']['untrained']['hidden_loss']:>16.4f}"
        f"{report['untrained_sst2']['dev_accuracy']:>15.3f}{'':>12}"
    )
    rows = [("mlm", "masked-LM only"), ("distill", "distilled (hidden)"), ("logits", "distilled (logits)")]
    for objective, name in rows:
        if objective not in report:
            continue
        row = report[objective]
        hidden = row["trained"].get("hidden_loss")
        hidden = f"{hidden:>16.4f}" if hidden is not None else f"{'-':>16}"
        print(
            f"{name:<22}{row['trained']['mlm_loss']:>10.3f}{hidden}{row['sst2']['dev_accuracy']:>15.3f}"
            f"{row['wall_seconds']:>12.0f}"
        )
    if "teacher_head" in report:
        print(
            f"teacher MiniLM + trained MLM head: held-out MLM loss {report['teacher_head']['held_out_mlm_loss']:.3f}"
        )
    print(f"results: {opts.output_dir / 'results.json'}")


if __name__ == "__main__":
    main()
