# Copyright 2026 The hf_bort developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
"""Pretrain a Bort student on plain text, by distillation from a teacher (Bort's recipe) or by masked-LM alone.

    accelerate launch recipes/pretrain.py \\
        --teacher roberta-large --train_file wiki.train.raw --eval_file wiki.test.raw \\
        --output_dir bort-distilled --max_steps 10000

Any `TrainingArguments` flag works (learning rate, batch size, `--resume_from_checkpoint last`, ...). The student is a
`BortForMaskedLM` sharing the teacher's tokenizer, initialised at random (`--init random`) or extracted from the teacher
by OSE (`--init extract`). The output folder is Hub-ready: weights, config, tokenizer and a model card; the held-out
losses (before and after training) are printed and written to `held_out_losses.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import ModelCard
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    HfArgumentParser,
    PreTrainedModel,
    Trainer,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from hf_bort import Architecture, BortConfig, BortForMaskedLM, BortModel, extract_subnetwork
from hf_bort.distill import DistillationArguments, DistillationTrainer, check_tokenizers_match
from hf_bort.errors import check_model_source, load_checkpoint, run_main
from hf_bort.output_dir import check_output_dir, record_run
from hf_bort.text_data import MaskedLMCollator, check_block_size, load_text, mask_once, pack_into_blocks


MODEL_CARD = """---
library_name: transformers
license: apache-2.0
tags:
- bort
- hf_bort
- fill-mask
- knowledge-distillation
pipeline_tag: fill-mask
---

# {name}

A Bort-family masked language model (de Wynter & Perry, 2020, [arXiv:2010.10499](https://arxiv.org/abs/2010.10499))
pretrained with `recipes/pretrain.py` of hf_bort.

| | |
|---|---|
| objective | {objective} |
| teacher | `{teacher}` |
| student init | {init} |
| architecture (depth, heads, hidden, intermediate) | {depth}, {heads}, {hidden}, {intermediate} |
| parameters | {params:,} |
| training text | `{train_source}` ({train_blocks:,} blocks of {block_size} tokens) |
| steps | {steps} |
| held-out text | `{eval_source}` |
| held-out loss before / after | {eval_before} / {eval_after} |

```python
import hf_bort  # registers the Bort model type
from transformers import pipeline
fill = pipeline("fill-mask", model="{name}")
```
"""


@dataclass
class PretrainArguments:
    """What to train on and what to build; the optimisation itself is configured by `DistillationArguments`."""

    train_file: str = field(
        metadata={"help": "Training text: a file, a folder of .txt/.raw files, or a dataset name."}
    )
    eval_file: str | None = field(default=None, metadata={"help": "Held-out text (file, folder or dataset name)."})
    dataset_config: str | None = field(default=None, metadata={"help": "Config of a `datasets` dataset name."})
    train_split: str = field(default="train", metadata={"help": "Split of a dataset name used for training."})
    eval_split: str = field(default="validation", metadata={"help": "Split of a dataset name held out."})
    text_column: str = field(default="text", metadata={"help": "Text column of a `datasets` dataset."})
    teacher: str | None = field(default=None, metadata={"help": "Teacher checkpoint (path or Hub id)."})
    objective: str = field(default="distill", metadata={"help": "'distill' (from --teacher) or 'mlm' (no teacher)."})
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer; defaults to the teacher's."})
    init: str = field(
        default="random",
        metadata={
            "help": "'random' from the student flags, 'extract' (OSE, from --teacher), or a saved student folder."
        },
    )
    student_layers: int = field(default=4, metadata={"help": "Student depth D."})
    student_heads: int = field(default=8, metadata={"help": "Student attention heads A."})
    student_hidden: int = field(default=1024, metadata={"help": "Student hidden width H."})
    student_intermediate: int = field(default=768, metadata={"help": "Student feed-forward width I."})
    student_max_positions: int = field(default=512, metadata={"help": "Student position table size."})
    block_size: int = field(default=128, metadata={"help": "Tokens per packed training block."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens masked."})
    max_train_blocks: int | None = field(default=None, metadata={"help": "Use at most this many training blocks."})
    max_eval_blocks: int | None = field(default=None, metadata={"help": "Use at most this many held-out blocks."})
    eval_untrained: bool = field(default=True, metadata={"help": "Also report the held-out loss before training."})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an earlier run of this recipe in --output_dir (any other is refused)."},
    )

    def __post_init__(self):
        if self.objective not in ("distill", "mlm"):
            raise ValueError(f"--objective must be 'distill' or 'mlm', got {self.objective!r}.")
        if self.init not in ("random", "extract") and not Path(self.init).is_dir():
            raise ValueError(
                f"--init must be 'random', 'extract' or a folder with a saved Bort student; got {self.init!r}."
            )
        if self.objective == "distill" and self.teacher is None:
            raise ValueError("--objective distill needs --teacher <checkpoint>; use --objective mlm to train alone.")
        if self.tokenizer is None and self.teacher is None:
            raise ValueError("Pass --tokenizer (or --teacher, whose tokenizer is then used).")
        if self.init == "extract" and self.teacher is None:
            raise ValueError("--init extract extracts the student from --teacher; pass --teacher <checkpoint>.")


# Settings that decide a run's result: a resumed run must have the same.
_RESUME_KEYS = ("train_file", "dataset_config", "train_split", "text_column", "teacher", "objective", "tokenizer", "init",
                "student_layers", "student_heads", "student_hidden", "student_intermediate", "student_max_positions",
                "block_size", "mlm_probability", "max_train_blocks", "seed", "learning_rate", "mlm_weight",
                "kd_weight", "temperature", "hidden_weight", "attention_weight", "distill_signals")  # fmt: skip


def _run_settings(script: PretrainArguments, args: DistillationArguments) -> dict:
    return {key: getattr(script, key) if hasattr(script, key) else getattr(args, key) for key in _RESUME_KEYS}


def _resume(args: DistillationArguments) -> str | bool | None:
    """`--resume_from_checkpoint last` (the last checkpoint of --output_dir) or a checkpoint's path."""
    return True if args.resume_from_checkpoint == "last" else args.resume_from_checkpoint


def _load_teacher(script: PretrainArguments) -> PreTrainedModel:
    """The teacher with its MLM head when its checkpoint has one; the bare encoder otherwise (hidden-state KD)."""
    config = AutoConfig.from_pretrained(script.teacher)
    has_head = any("MaskedLM" in name or "PreTraining" in name for name in (config.architectures or []))
    return load_checkpoint(AutoModelForMaskedLM if has_head else AutoModel, script.teacher, "--teacher")


def _build_student(
    script: PretrainArguments, tokenizer, teacher: PreTrainedModel | None, seed: int
) -> BortForMaskedLM:
    """A random Bort of the requested shape over the tokenizer's vocabulary, or the teacher's OSE subnetwork."""
    architecture = {
        "num_hidden_layers": script.student_layers,
        "num_attention_heads": script.student_heads,
        "hidden_size": script.student_hidden,
        "intermediate_size": script.student_intermediate,
    }
    if script.init == "extract":
        arch = Architecture(
            script.student_layers, script.student_heads, script.student_hidden, script.student_intermediate
        )
        return _with_mlm_head(extract_subnetwork(teacher, arch, as_bort=True))
    if script.init != "random":
        return _with_mlm_head(load_checkpoint(AutoModel, script.init, "--init"))
    set_seed(seed)
    config = BortConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=script.student_max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **architecture,
    )
    return BortForMaskedLM(config)


def _with_mlm_head(encoder: PreTrainedModel) -> BortForMaskedLM:
    """A Bort encoder (extracted or saved) under a fresh masked-LM head, tied to its embeddings."""
    if isinstance(encoder, BortForMaskedLM):
        return encoder
    if not isinstance(encoder, BortModel):
        raise ValueError(
            f"The student must be a Bort model; got {type(encoder).__name__}. Convert or extract it first "
            "(hf-bort convert, or hf_bort.extract_subnetwork(..., as_bort=True))."
        )
    student = BortForMaskedLM(encoder.config)
    student.bort.load_state_dict(encoder.state_dict())
    student.tie_weights()
    return student


def _held_out_losses(metrics: dict[str, float]) -> dict[str, float]:
    """The loss terms of an evaluation; for a masked-LM-only run the total is the masked-LM loss."""
    losses = {key.removeprefix("eval_"): value for key, value in metrics.items() if key.endswith("loss")}
    losses.setdefault("mlm_loss", losses["loss"])
    return losses


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((PretrainArguments, DistillationArguments))
    parser.set_defaults(
        learning_rate=5e-4, warmup_steps=0.06, per_device_train_batch_size=16, per_device_eval_batch_size=32,
        max_steps=1000, logging_steps=50, save_steps=500, eval_strategy="no", report_to="none",
        remove_unused_columns=False, save_total_limit=2, ddp_find_unused_parameters=False,
    )  # fmt: skip
    script, args = parser.parse_args_into_dataclasses(args=argv)
    if script.teacher is not None:
        check_model_source(script.teacher, "--teacher")
    if script.tokenizer is not None and not Path(script.tokenizer).is_dir():  # a tokenizer folder has no config.json
        check_model_source(script.tokenizer, "--tokenizer")
    if script.init not in ("random", "extract"):
        check_model_source(script.init, "--init")
    settings, resume = _run_settings(script, args), _resume(args)
    check_output_dir(
        args.output_dir, "pretrain.py", settings, overwrite=script.overwrite, resume=resume,
        overwrite_flag="--overwrite", resume_flag="--resume_from_checkpoint last",
    )  # fmt: skip
    if resume is True:
        args.resume_from_checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        if args.resume_from_checkpoint is None:
            raise FileNotFoundError(f"--resume_from_checkpoint last: no checkpoint-* folder in {args.output_dir}.")

    tokenizer = AutoTokenizer.from_pretrained(script.tokenizer or script.teacher)
    teacher = _load_teacher(script) if script.objective == "distill" or script.init == "extract" else None
    if teacher is not None and script.tokenizer is not None and script.objective == "distill":
        check_tokenizers_match(AutoTokenizer.from_pretrained(script.teacher), tokenizer)
    student = _build_student(script, tokenizer, teacher, args.seed)
    check_block_size(script.block_size, *(m.config for m in (student, teacher) if m is not None))

    with args.main_process_first(desc="preparing text"):
        train_text = load_text(script.train_file, script.train_split, script.dataset_config, script.text_column)
        train_blocks = pack_into_blocks(train_text, tokenizer, script.block_size, script.max_train_blocks)
        eval_blocks = None
        if script.eval_file is not None:
            eval_text = load_text(script.eval_file, script.eval_split, script.dataset_config, script.text_column)
            eval_blocks = pack_into_blocks(eval_text, tokenizer, script.block_size, script.max_eval_blocks)
            eval_blocks = mask_once(eval_blocks, tokenizer, script.mlm_probability, seed=args.seed)
    record_run(args.output_dir, "pretrain.py", settings, resume)  # every input read: the folder is now the run's

    common = dict(
        model=student, args=args, train_dataset=train_blocks, eval_dataset=eval_blocks, processing_class=tokenizer,
        data_collator=MaskedLMCollator(tokenizer, script.mlm_probability),
    )  # fmt: skip
    trainer = DistillationTrainer(teacher=teacher, **common) if script.objective == "distill" else Trainer(**common)

    results = {"num_processes": trainer.accelerator.num_processes, "objective": script.objective}
    if script.objective == "distill":
        results["signals"] = trainer.signals
    if eval_blocks is not None and script.eval_untrained and not args.resume_from_checkpoint:
        results["untrained"] = _held_out_losses(trainer.evaluate(metric_key_prefix="eval"))
    start = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    results["train_seconds"] = round(time.perf_counter() - start, 1)
    results["train_loss"] = train_output.training_loss
    results["steps"] = trainer.state.global_step
    if eval_blocks is not None:
        results["trained"] = _held_out_losses(trainer.evaluate(metric_key_prefix="eval"))

    trainer.save_model(args.output_dir)  # the student only: the hidden-state projection stays in the checkpoints
    if trainer.is_world_process_zero():
        _write_model_card(args, script, student, results, len(train_blocks))
        (Path(args.output_dir) / "held_out_losses.json").write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results, indent=2))
    return results


def _write_model_card(args, script: PretrainArguments, student, results: dict, train_blocks: int) -> None:
    def loss(key: str) -> str:
        value = results.get(key, {}).get("mlm_loss")
        return "n/a" if value is None else f"{value:.3f} (masked-LM)"

    config = student.config
    card = MODEL_CARD.format(
        name=Path(args.output_dir).name,
        objective=(
            f"distillation ({', '.join(results['signals'])}; mlm_weight {args.mlm_weight}, kd_weight "
            f"{args.kd_weight}, T {args.temperature}, hidden_weight {args.hidden_weight})"
            if script.objective == "distill"
            else "masked-LM only"
        ),
        teacher=script.teacher if script.objective == "distill" else "none",
        init=script.init,
        depth=config.num_hidden_layers,
        heads=config.num_attention_heads,
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        params=student.num_parameters(),
        train_source=script.train_file,
        train_blocks=train_blocks,
        block_size=script.block_size,
        steps=results["steps"],
        eval_source=script.eval_file or "none",
        eval_before=loss("untrained"),
        eval_after=loss("trained"),
    )
    ModelCard(card).save(Path(args.output_dir) / "README.md")


if __name__ == "__main__":
    raise SystemExit(run_main(main, "pretrain.py"))
