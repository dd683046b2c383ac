"""Agora against the augmentation people already use: same student, same steps, same teacher-labelled rows.

Arms (per task and seed, all scored on the official GLUE dev set, which no arm ever sees):

| arm | what |
|---|---|
| plain | fine-tuning on the scarce train rows |
| non_targeted | + teacher-labelled variants from Agora's sampler around *random* train rows (not dev errors) |
| eda | + teacher-labelled nlpaug EDA variants (random word swap / deletion) of random train rows |
| kd | distillation (teacher's soft labels, T=2) on the train rows + the eda pool (TinyBERT-style) |
| agora | Agora with one setting (the arguments as given) |
| agora_theta | Agora with Θ (`--theta`, default three learning rates around `--lr`), halving each round |

Budgets: `agora` runs first; its optimisation steps S and its number of teacher-labelled rows K fix the budget of
`plain`, `non_targeted`, `eda` and `kd` (S steps; K labelled rows). The Agora arms carve their dev split (10%)
out of the scarce rows; the other arms train on all of them. `agora_theta` trains |Θ| models in round one, so its
*total* compute is larger (reported as `total_steps`); its final model's lineage takes about S steps.

Teacher: MiniLM-L6 (all-MiniLM-L6-v2) fine-tuned on the task's train split once and cached in --teacher-dir
(`--teacher-rows` caps the rows, e.g. 8,000 for SST-2 on a small CPU). Student: MiniLM's embeddings and first
--student-layers layers, classifier head fresh (seeded).

    PYTHONPATH=. python benchmarks/agora_glue.py --tasks sst2 --train-rows 500 --seeds 0 1 2 3 4
    PYTHONPATH=. python benchmarks/agora_glue.py --quick --teacher PATH --allow-weak-teacher   # the fast test

The active-learning comparison (`--active`, issue 23): every arm at the same teacher labels (`--budgets`), steps
and seeds, through the same `AgoraTrainer` (its rounds, Θ, Agora dev split and a selection split carved from the
labelled rows, KD on every real row), differing only in which rows the teacher labels: none (`kd`), pool rows at
random (`kd_random`), the pool rows the student is least sure of (`kd_uncertainty`), the pool rows nearest the dev
errors (`kd_agora_pool`), or masked-LM variants of the dev errors (`kd_agora_contextual`, `--mlm`). The pool is the
rest of the train split with its labels dropped. Each round trains `steps_per_round` steps in every arm. One JSON per
(task, arm, budget, seed) in `--cache-dir`: a rerun trains only the missing cells.

    python benchmarks/agora_glue.py --active --tasks sst2 --train-rows 500 --budgets 500 1000 --seeds 0 1 2 \
        --cache-dir CELLS --mlm MLM --out sst2_active.json --plots

Writes --out (JSON: every run) after each seed, and with --plots a plot of the arms and one of Agora's rounds per
task. A rerun into the same --out reuses the (task, seed) runs already there when the settings and the teacher's
weights match (else it says which differ), so seeds can be added later. `--report A.json B.json` merges finished
runs (e.g. SST-2 and MRPC, run with their own --train-rows) into one table with the paired gains of Agora with Θ
over every arm and the goals met or missed.
"""

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    Trainer,
    TrainingArguments,
)


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hf_bort.agora import (  # noqa: E402
    AgoraArguments,
    AgoraDataCollator,
    AgoraTeacher,
    AgoraTrainer,
    ContextualSampler,
    EmbeddingNeighbourSampler,
    MaskedLMSampler,
    PoolSampler,
    carve_dev_split,
    plot_agora_history,
    sample_near,
)
from hf_bort.agora.data import TEACHER_PROBS  # noqa: E402
from hf_bort.agora.samplers import row_key  # noqa: E402
from hf_bort.glue import get_task, load_glue  # noqa: E402
from hf_bort.metrics import scores  # noqa: E402
from hf_bort.testing import offline_minilm_dir  # noqa: E402


ARMS = ("plain", "non_targeted", "eda", "kd", "agora", "agora_theta")
# The student's learning rate was calibrated on SST-2 (450 rows, 2 layers, 150 steps, seed 0; official dev set):
# 1e-4 leaves it near chance (0.549), 3e-4 reaches 0.697. Θ spans half to twice that.
DEFAULT_LR = 3e-4
DEFAULT_THETA = '[{"learning_rate": 1.5e-4}, {"learning_rate": 3e-4}, {"learning_rate": 6e-4}]'


def label_maps(task):
    return dict(enumerate(task.label_names)), {name: i for i, name in enumerate(task.label_names)}


def score(trainer: Trainer, dataset) -> dict[str, float]:
    predictions = trainer.predict(dataset).predictions.argmax(-1)
    labels = np.asarray(list(dataset["label"]))
    return {name: scores.score(name, predictions, labels) for name in ("accuracy", "f1")}


def train_teacher(task, data, tokenizer, args) -> Path:
    """Fine-tune MiniLM-L6 on the train split (or --teacher-rows of it) once; later runs reuse the saved folder."""
    folder = Path(args.teacher_dir) / task.name
    if (folder / "teacher_eval.json").is_file():
        return folder
    id2label, label2id = label_maps(task)
    model = BertForSequenceClassification.from_pretrained(
        offline_minilm_dir(), num_labels=task.num_labels, id2label=id2label, label2id=label2id
    )
    rows = data["train"]
    if args.teacher_rows and args.teacher_rows < len(rows):
        rows = rows.shuffle(seed=1234).select(range(args.teacher_rows))
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
        disable_tqdm=args.no_bars,
    )
    collator = AgoraDataCollator(tokenizer, task.text_columns, "label", args.max_length)
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


def check_teacher(task, folder: Path, allow_weak: bool) -> None:
    """The paper's "ok-ish" bar (accuracy above 2/3), checked on the official dev set.

    AgoraTrainer checks its teacher on the Agora dev split, but this teacher was fine-tuned on the whole train split,
    those rows included, so it is scored there in-sample: on RTE, 0.856 on the split against 0.567 on the official
    dev set. The held-out score is the one that says whether the teacher is ok-ish.
    """
    evaluation = Path(folder) / "teacher_eval.json"
    if task.num_labels != 2 or not evaluation.is_file():
        return
    accuracy = json.loads(evaluation.read_text())["accuracy"]
    if accuracy <= 2 / 3 and not allow_weak:
        raise SystemExit(
            f"The {task.name} teacher scores {accuracy:.3f} on the official dev set, not above the paper's 2/3 bar "
            "for an ok-ish labeller (on the Agora dev split it would be scored on rows it trained on); pass "
            "--allow-weak-teacher to run anyway."
        )


def extract_student(task, layers: int, seed: int) -> BertForSequenceClassification:
    """MiniLM's embeddings and first `layers` encoder layers; the classifier is freshly initialised (seeded)."""
    parent = BertForSequenceClassification.from_pretrained(offline_minilm_dir(), num_labels=task.num_labels)
    config = BertConfig.from_pretrained(offline_minilm_dir(), num_hidden_layers=layers, num_labels=task.num_labels)
    config.id2label, config.label2id = label_maps(task)
    torch.manual_seed(seed)
    student = BertForSequenceClassification(config)
    wanted = student.state_dict()
    copied = {k: v for k, v in parent.state_dict().items() if k in wanted and not k.startswith("classifier.")}
    student.load_state_dict(copied, strict=False)
    return student


class _DistillTrainer(Trainer):
    """Soft cross-entropy to the teacher's probabilities at temperature T (x T^2), plus gold CE on real rows."""

    temperature = 2.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "teacher_probs" not in inputs:  # scoring a split without teacher probabilities
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        teacher_probs = inputs.pop("teacher_probs")
        teacher_mask = inputs.pop("teacher_mask")
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits
        t = self.temperature
        target = (teacher_probs.clamp_min(1e-12).log() / t).softmax(-1)
        soft = -(target * (logits / t).log_softmax(-1)).sum(-1).mean() * t * t
        real = ~teacher_mask
        hard = torch.nn.functional.cross_entropy(logits[real], labels[real]) if bool(real.any()) else 0.0
        loss = 0.5 * soft + 0.5 * hard
        return (loss, outputs) if return_outputs else loss


def eda_variants(texts: list[str], count: int, seed: int, fraction: float) -> list[str]:
    """nlpaug EDA: random word swap or deletion (synonym replacement/insertion need WordNet, not offline)."""
    import random

    import nlpaug.augmenter.word as naw

    random.seed(seed)
    np.random.seed(seed)
    swap = naw.RandomWordAug(action="swap", aug_p=fraction)
    delete = naw.RandomWordAug(action="delete", aug_p=fraction)
    out = []
    for k, text in enumerate(texts[:count]):
        augmenter = swap if k % 2 == 0 else delete
        out.append((augmenter.augment(text) or [text])[0])
    return out


def labelled_pool(task, rows, teacher, tokenizer, seed: int, count: int, kind: str, args) -> datasets.Dataset:
    """`count` teacher-labelled variants of random train rows, from Agora's sampler or nlpaug's EDA."""
    if count == 0:
        return rows.select([])
    rng = np.random.default_rng(seed + 7)
    sources = [tuple(rows[int(i)][c] for c in task.text_columns) for i in rng.integers(0, len(rows), 4 * count)]
    found: list[tuple[str, ...]] = []
    seen = set(zip(*(list(rows[c]) for c in task.text_columns)))
    if kind == "sampler":
        student = extract_student(task, args.student_layers, seed)
        sampler = EmbeddingNeighbourSampler(
            student, tokenizer, args.replace_fraction, args.num_neighbours, args.max_length
        )
        generator = torch.Generator().manual_seed(seed)
        for start in range(0, len(sources), 64):
            for variants in sample_near(sampler, sources[start : start + 64], 1, generator, "both"):
                found.extend(variants)
            if len({v for v in found if v not in seen}) >= count:
                break
    else:
        columns = [
            eda_variants([s[c] for s in sources], len(sources), seed + c, args.replace_fraction)
            for c in range(len(task.text_columns))
        ]
        found = list(zip(*columns))
    unique = [v for v in dict.fromkeys(found) if v not in seen][:count]
    labeller = AgoraTeacher(teacher, teacher.config.label2id, tokenizer, args.max_length, 64)
    out = labeller(unique)
    data = {c: [v[k] for v in unique] for k, c in enumerate(task.text_columns)}
    data["label"] = out.labels.tolist()
    data[TEACHER_PROBS] = out.probs.tolist()
    return datasets.Dataset.from_dict(data)


def train_arm(task, rows, pool, tokenizer, seed: int, steps: int, args, distill: bool = False) -> Trainer:
    """The student on the train rows + a labelled pool, for exactly `steps` optimisation steps."""
    base = rows.select_columns([*task.text_columns, "label"]).cast_column("label", datasets.Value("int64"))
    if len(pool):
        pool = pool.cast_column("label", datasets.Value("int64"))
        if distill:
            base = base.add_column(TEACHER_PROBS, rows["_teacher_probs"])
            base = base.cast(pool.features)
            train = datasets.concatenate_datasets([base, pool])
        else:
            train = datasets.concatenate_datasets([base, pool.remove_columns(TEACHER_PROBS)])
    else:
        train = base
    targs = TrainingArguments(tempfile.mkdtemp(prefix="agora_arm_"), max_steps=steps, **common_args(seed, args))
    trainer_class = _DistillTrainer if distill else Trainer
    trainer = trainer_class(
        model=extract_student(task, args.student_layers, seed),
        args=targs,
        train_dataset=train,
        data_collator=AgoraDataCollator(tokenizer, task.text_columns, "label", args.max_length),
    )
    trainer.train()
    return trainer


def common_args(seed: int, args) -> dict:
    return dict(
        learning_rate=args.lr,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        seed=seed,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        remove_unused_columns=False,
        warmup_steps=0,
        logging_steps=1000,
        disable_tqdm=args.no_bars,
    )


def run_agora(task, split, teacher_dir, tokenizer, seed, args, theta: str | None) -> AgoraTrainer:
    agora_args = AgoraArguments(
        tempfile.mkdtemp(prefix="agora_run_"),
        agora_rounds=args.rounds,
        epochs_per_round=args.epochs_per_round,
        samples_per_error=args.samples_per_error,
        replace_fraction=args.replace_fraction,
        num_neighbours=args.num_neighbours,
        agora_patience=args.patience,
        agora_max_length=args.max_length,
        agora_hyperparameter_space=theta,
        agora_metric=args.metric or _headline(task.name),
        agora_allow_weak_teacher=args.allow_weak_teacher,
        # --soft-labels: distil on every row (the teacher labels the real rows too), with the kd arm's 1:1 CE : KD.
        soft_labels=args.soft_labels,
        distill_train_rows=args.soft_labels,
        distill_alpha=1.0,
        **common_args(seed, args),
    )
    teacher = BertForSequenceClassification.from_pretrained(teacher_dir)
    trainer = AgoraTrainer(
        model=extract_student(task, args.student_layers, seed),
        args=agora_args,
        train_dataset=split["train"],
        agora_dev_dataset=split["dev"],
        teacher=(teacher, AutoTokenizer.from_pretrained(teacher_dir)),
        processing_class=tokenizer,
    )
    output = trainer.train()
    trainer.agora_total_steps = output.global_step
    trainer.agora_best = (output.metrics["agora_best_round"], output.metrics["agora_best_setting"])
    return trainer


def run_seed(task, data, tokenizer, teacher_dir: Path, seed: int, args) -> dict:
    rows = data["train"].shuffle(seed=seed)
    if args.train_rows:
        rows = rows.select(range(min(args.train_rows, len(rows))))
    split = carve_dev_split(rows, args.dev_fraction, seed, text_columns=task.text_columns)
    result = {"task": task.name, "seed": seed, "student_rows": len(rows), "arms": {}}
    timings = {}

    start = time.time()
    agora = run_agora(task, split, teacher_dir, tokenizer, seed, args, None)
    steps, labelled = agora.agora_total_steps, len(agora.agora_generated)
    result["arms"]["agora"] = score(agora, data["validation"]) | {"steps": steps, "labelled_rows": labelled}
    result["history"] = [r.to_dict() for r in agora.agora_history]
    result["teacher_on_agora_dev"] = agora.agora_teacher_report
    timings["agora"] = time.time() - start

    start = time.time()
    theta = run_agora(task, split, teacher_dir, tokenizer, seed, args, args.theta)
    lineage = _lineage_steps(theta)
    result["arms"]["agora_theta"] = score(theta, data["validation"]) | {
        "steps": lineage,
        "total_steps": theta.agora_total_steps,
        "labelled_rows": len(theta.agora_generated),
    }
    result["history_theta"] = [r.to_dict() for r in theta.agora_history]
    timings["agora_theta"] = time.time() - start

    teacher = BertForSequenceClassification.from_pretrained(teacher_dir).eval()
    start = time.time()
    plain = train_arm(task, rows, rows.select([]), tokenizer, seed, steps, args)
    result["arms"]["plain"] = score(plain, data["validation"]) | {"steps": steps, "labelled_rows": 0}
    timings["plain"] = time.time() - start
    for arm, kind in (("non_targeted", "sampler"), ("eda", "eda")):
        start = time.time()
        pool = labelled_pool(task, rows, teacher, tokenizer, seed, labelled, kind, args)
        trainer = train_arm(task, rows, pool, tokenizer, seed, steps, args)
        result["arms"][arm] = score(trainer, data["validation"]) | {"steps": steps, "labelled_rows": len(pool)}
        timings[arm] = time.time() - start
        if arm == "eda":
            eda_pool = pool
    start = time.time()
    real_probs = AgoraTeacher(teacher, teacher.config.label2id, tokenizer, args.max_length, 64)(
        list(zip(*(list(rows[c]) for c in task.text_columns)))
    ).probs
    kd_rows = rows.add_column("_teacher_probs", real_probs.tolist())
    trainer = train_arm(task, kd_rows, eda_pool, tokenizer, seed, steps, args, distill=True)
    result["arms"]["kd"] = score(trainer, data["validation"]) | {
        "steps": steps,
        "labelled_rows": len(eda_pool) + len(rows),
    }
    timings["kd"] = time.time() - start
    result["wall_s"] = timings
    return result


def _lineage_steps(trainer: AgoraTrainer) -> int:
    """Optimisation steps on the final model's training path: each round's best setting up to the best round."""
    best_round, best_setting = trainer.agora_best
    steps = 0
    for record in trainer.agora_history:
        chosen = best_setting if record.round == best_round else record.setting
        steps += next(s["steps"] for s in record.settings if s["setting"] == chosen)
        if record.round == best_round:
            break
    return steps


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _headline(task: str) -> str:
    """The metric the goals are judged on: F1 where GLUE reports it (MRPC, QQP), else accuracy."""
    return "f1" if task in ("mrpc", "qqp") else "accuracy"


def summarise(results: list[dict]) -> str:
    """Per task: every arm's mean ± std, agora_theta's paired gain over it (points) and its wins, and the goals."""
    lines = []
    for task in sorted({r["task"] for r in results}):
        runs = sorted((r for r in results if r["task"] == task), key=lambda r: r["seed"])
        headline = _headline(task)
        metrics = ("accuracy", "f1") if headline == "f1" else ("accuracy",)
        lines.append(
            f"\n{task}: {len(runs)} seeds {[r['seed'] for r in runs]}, official dev set (%); goals on {headline}"
        )
        lines.append(
            f"{'arm':13} " + " ".join(f"{m:>16}" for m in metrics) + f"  {'agora_theta gain':>18}  wins (ties)"
        )
        theta = [r["arms"]["agora_theta"][headline] * 100 for r in runs]
        for arm in ARMS:
            cells = []
            for metric in metrics:
                values = [r["arms"][arm][metric] * 100 for r in runs]
                cells.append(f"{statistics.mean(values):7.2f} +- {_spread(values):5.2f}")
            gains = [t - r["arms"][arm][headline] * 100 for t, r in zip(theta, runs)]
            paired = "" if arm == "agora_theta" else f"{statistics.mean(gains):+7.2f} +- {_spread(gains):5.2f}"
            wins = sum(g > 0 for g in gains)
            ties = sum(g == 0 for g in gains)
            record = "" if arm == "agora_theta" else f"{wins}/{len(runs)} ({ties})"
            lines.append(f"{arm:13} " + " ".join(f"{c:>16}" for c in cells) + f"  {paired:>18}  {record}")
        for arm, need in [("plain", 3.0)] + [(a, 1.0) for a in ARMS if a not in ("plain", "agora_theta")]:
            gain = statistics.mean(t - r["arms"][arm][headline] * 100 for t, r in zip(theta, runs))
            verdict = "met" if gain >= need else f"MISSED by {need - gain:.2f}"
            lines.append(f"goal agora_theta >= {arm} + {need:g}: mean gain {gain:+.2f} -> {verdict}")
    return "\n".join(lines)


def plot(results: list[dict], prefix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in results})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        runs = [r for r in results if r["task"] == task]
        for x, arm in enumerate(ARMS):
            values = [r["arms"][arm][_headline(task)] * 100 for r in runs]
            ax.scatter([x] * len(values), values, alpha=0.5)
            ax.errorbar(x, statistics.mean(values), yerr=_spread(values), fmt="k_", capsize=6)
        ax.set_xticks(range(len(ARMS)), ARMS, rotation=30)
        ax.set_ylabel(f"{_headline(task)} on the official dev set (%)")
        ax.set_title(f"{task}: {len(runs)} seeds")
    fig.tight_layout()
    fig.savefig(f"{prefix}_arms.png", dpi=100)
    plt.close(fig)
    for task in tasks:  # Agora with Θ's rounds, for the first seed of each task
        first = min((r for r in results if r["task"] == task), key=lambda r: r["seed"])
        plot_agora_history(first["history_theta"], f"{prefix}_rounds_{task}_seed{first['seed']}.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    shared = Path(os.environ.get("HF_BORT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--data-dir", default=str(shared / "data" / "glue"))
    parser.add_argument("--teacher-dir", default=str(Path.home() / ".cache" / "hf_bort" / "agora_teachers"))
    parser.add_argument("--teacher", help="Use this fine-tuned classifier folder as the teacher (no caching).")
    parser.add_argument("--teacher-epochs", type=float, default=1.0)
    parser.add_argument("--teacher-rows", type=int, default=0, help="Rows of train the teacher sees (0: all).")
    parser.add_argument("--student-layers", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=0, help="Rows of train the student sees (0: all).")
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--theta", default=DEFAULT_THETA, help="Θ of the agora_theta arm (JSON).")
    parser.add_argument("--metric", default=None, help="agora_metric (default: f1 for MRPC/QQP, else accuracy).")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs-per-round", type=float, default=3.0)
    parser.add_argument("--samples-per-error", type=int, default=4)
    parser.add_argument("--replace-fraction", type=float, default=0.15)
    parser.add_argument("--num-neighbours", type=int, default=10)
    parser.add_argument("--patience", type=int, default=0)
    parser.add_argument("--allow-weak-teacher", action="store_true")
    parser.add_argument(
        "--soft-labels",
        action="store_true",
        help="The Agora arms distil on the teacher's probabilities on every row, real and generated, as kd does.",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-bars", action="store_true")
    parser.add_argument("--out", default="agora_glue.json")
    parser.add_argument("--plots", action="store_true", help="Write <out>_arms.png and a plot of Agora's rounds.")
    parser.add_argument("--teachers-only", action="store_true", help="Only fine-tune (and cache) the teachers.")
    parser.add_argument("--quick", action="store_true", help="SST-2, 1 seed, 60 rows, 2 rounds of 1 epoch, length 32.")
    parser.add_argument(
        "--report", nargs="+", metavar="JSON", help="Train nothing: merge these runs' --out files into one table."
    )
    active = parser.add_argument_group("the active-learning comparison at an equal label budget (--active)")
    active.add_argument("--active", action="store_true", help="Run the arms of ACTIVE_ARMS at each --budgets.")
    active.add_argument("--arms", nargs="+", default=list(ACTIVE_ARMS), choices=ACTIVE_ARMS)
    active.add_argument("--budgets", nargs="+", type=int, default=list(DEFAULT_BUDGETS), help="Teacher labels.")
    active.add_argument("--cache-dir", default=None, help="One JSON per (task, arm, budget, seed): resumable.")
    active.add_argument("--selection-fraction", type=float, default=0.1, help="Of the labelled rows: picks the model.")
    active.add_argument("--pool-rows", type=int, default=0, help="At most this many pool rows (0: the whole rest).")
    active.add_argument(
        "--pool-space",
        choices=("student", *FIXED_SPACES),
        default="student",
        help="kd_agora_pool's space: the student's states (re-embedded every expansion), the MiniLM sentence encoder "
        "or the teacher's encoder (both fixed: embedded once).",
    )
    active.add_argument(
        "--pool-balance",
        action="store_true",
        help="agora_pool_balance: kd_agora_pool draws its rows in the pool's class proportions (the teacher's labels).",
    )
    active.add_argument("--teacher-weight", default="1", help="teacher_row_weight: a number or 'confidence'.")
    active.add_argument(
        "--selection-tolerance",
        type=float,
        default=1.0,
        help="agora_selection_tolerance: a later round's model is kept unless the peak leads it by more standard "
        "errors than this (0: the highest selection score wins).",
    )
    active.add_argument(
        "--mlm", default=None, help="Masked LM folder for kd_agora_contextual (MiniLM + trained head)."
    )
    active.add_argument(
        "--band", nargs=2, type=float, default=[0.85, 0.98], help="kd_agora_contextual's cosine band (min max)."
    )
    active.add_argument("--report-only", action="store_true", help="Train nothing: the cells in --cache-dir.")
    active.add_argument("--variant", default="", help="Cache and report these arms as ARM@VARIANT (an ablation).")
    active.add_argument(
        "--agreement", action="store_true", help="Only teacher-source agreement per sampler (first seed)."
    )
    args = parser.parse_args(argv)
    if args.report:
        results = [r for path in args.report for r in json.loads(Path(path).read_text())["results"]]
        report(results, args)
        return
    if args.quick:
        args.tasks, args.seeds, args.train_rows, args.max_length, args.rounds = ["sst2"], [0], 60, 32, 2
        args.epochs_per_round = 1.0
        args.theta = '{"learning_rate": [1e-4, 3e-4]}'
        args.budgets, args.pool_rows, args.band = [12], 300, [-1.0, 1.0]
    if args.active and not args.cache_dir:
        parser.error("--active needs --cache-dir: every (task, arm, budget, seed) cell is saved there.")
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(offline_minilm_dir())
    tasks = [get_task(name) for name in args.tasks]
    data = {task.name: load_glue(task, args.data_dir, ("train", "validation")) for task in tasks}
    teachers = {}
    for task in tasks:
        teachers[task.name] = (
            Path(args.teacher) if args.teacher else train_teacher(task, data[task.name], tokenizer, args)
        )
        evaluation = teachers[task.name] / "teacher_eval.json"
        print(f"{task.name} teacher: {json.loads(evaluation.read_text()) if evaluation.is_file() else 'given'}")
    if args.teachers_only:
        return
    for task in tasks:
        check_teacher(task, teachers[task.name], args.allow_weak_teacher)
    if args.active:
        main_active(args, data, tokenizer, tasks, teachers)
        return
    fingerprints = {name: _teacher_fingerprint(folder) for name, folder in teachers.items()}  # hashed once
    results = finished_runs(args, fingerprints)
    for seed in args.seeds:  # seeds outermost: a run cut short still has paired results for every task
        for task in tasks:
            if any(r["task"] == task.name and r["seed"] == seed for r in results):
                print(f"{task.name} seed {seed}: already in {args.out}, reused")
                continue
            result = run_seed(task, data[task.name], tokenizer, teachers[task.name], seed, args)
            result["teacher"] = fingerprints[task.name]
            results.append(result)
            print(json.dumps({k: result[k] for k in ("task", "seed", "arms", "wall_s")}), flush=True)
            Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    report(results, args)


# ----- the active-learning comparison: every arm at the same teacher labels, steps and seeds -----

ACTIVE_ARMS = ("kd", "kd_random", "kd_uncertainty", "kd_agora_pool", "kd_agora_contextual")
# arm -> the Agora sampler that picks its teacher-labelled rows (kd: none, its label budget is 0)
ARM_SAMPLERS = {
    "kd": None,
    "kd_random": "pool_random",
    "kd_uncertainty": "pool_uncertainty",
    "kd_agora_pool": "pool",
    "kd_agora_contextual": "contextual",
}
DEFAULT_BUDGETS = (250, 500, 1000, 2000)
# settings that decide a cell's numbers (with the teacher's and the masked LM's weights)
_ACTIVE_DECISIVE = (
    *("train_rows", "dev_fraction", "selection_fraction", "max_length", "lr", "theta", "metric", "rounds"),
    *("epochs_per_round", "student_layers", "pool_rows", "teacher_weight", "allow_weak_teacher"),
    "selection_tolerance",
)
# and those that decide one arm's rows only
_ARM_DECISIVE = {
    "kd_agora_pool": ("pool_space", "pool_balance"),
    "kd_agora_contextual": ("band", "replace_fraction", "num_neighbours"),
}


# The library code a cell ran: raised when a change to Agora or this benchmark changes any arm's numbers, so cells
# cached across sessions never mix code versions (they did before update 3 of ACTIVE.md, which is revision 3).
ACTIVE_REVISION = 3
# what a cell computed before a setting existed ran with
_SETTING_DEFAULTS = {"pool_balance": False, "revision": 3}


def labelled_and_pool(train: datasets.Dataset, seed: int, train_rows: int, pool_rows: int, text_columns):
    """The seed's labelled rows (as the first comparison draws them) and the pool: the rest of the train split with
    its labels dropped (at most `pool_rows` of it, drawn by the seed; 0: all), with the positions of its rows."""
    shuffled = train.add_column("_position", list(range(len(train)))).shuffle(seed=seed)  # the order run_seed draws
    labelled = shuffled.select(range(train_rows)).remove_columns("_position")
    positions = np.asarray(shuffled["_position"][train_rows:])
    if pool_rows and pool_rows < len(positions):
        positions = np.sort(np.random.default_rng(seed + 99).choice(positions, pool_rows, replace=False))
    pool = train.select(positions.tolist()).select_columns(list(text_columns))
    return labelled, pool, positions


def steps_per_round(train_rows: int, budget: int, args) -> int:
    """Every arm's steps per setting and round at a budget: the epochs of a round over the labelled rows plus half
    the budget (the set's mean size over three rounds), so KD trains as many steps as the arms that add rows."""
    return math.ceil(args.epochs_per_round * (train_rows + budget / 2) / 16)


def _label(arm: str, variant: str) -> str:
    """An arm's name in the cache and the table: `arm`, or `arm@variant` for a variant of its settings."""
    return f"{arm}@{variant}" if variant else arm


def _cell_path(args, task: str, arm: str, budget: int, seed: int) -> Path:
    return Path(args.cache_dir) / task / _label(arm, args.variant) / f"budget{budget}_seed{seed}.json"


def _cell_settings(args, fingerprints: dict[str, str], task: str, arm: str) -> dict:
    settings = {key: getattr(args, key) for key in (*_ACTIVE_DECISIVE, *_ARM_DECISIVE.get(arm, ()))}
    settings["teacher"] = fingerprints[task]
    settings["revision"] = ACTIVE_REVISION
    if arm == "kd_agora_contextual":
        settings["mlm"] = fingerprints["mlm"]
    return settings


FIXED_SPACES = ("encoder", "teacher")


def fixed_space(task, train: datasets.Dataset, args, space: str, teacher_dir: Path) -> tuple:
    """(encoder, tokenizer, vectors of every train row) of a fixed pool space: the offline MiniLM sentence encoder
    ("encoder") or the teacher's own encoder ("teacher", whose fine-tuned states separate the task's classes). The
    vectors are computed once per task and space (cached, keyed by the teacher's weights)."""
    from hf_bort.agora.pool import embed_rows

    if space == "teacher":
        folder, name = teacher_dir, f"teacher{_teacher_fingerprint(teacher_dir)}"
        encoder = BertForSequenceClassification.from_pretrained(teacher_dir).bert
    else:
        folder, name = offline_minilm_dir(), "minilm"
        encoder = BertModel.from_pretrained(folder)
    encoder_tokenizer = AutoTokenizer.from_pretrained(folder)
    path = Path(args.cache_dir) / "embeddings" / f"{task.name}_{name}_len{args.max_length}.pt"
    vectors = torch.load(path) if path.is_file() else None
    if vectors is None or len(vectors) != len(train):
        rows = list(zip(*(list(train[c]) for c in task.text_columns)))
        vectors = embed_rows(encoder, encoder_tokenizer, rows, args.max_length)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vectors, path)
    return encoder, encoder_tokenizer, vectors


def _fixed_pool_sampler(pool, space: tuple, positions, args) -> PoolSampler:
    encoder, encoder_tokenizer, vectors = space
    return PoolSampler(
        pool,
        encoder=encoder,
        encoder_tokenizer=encoder_tokenizer,
        embeddings=vectors[positions],
        max_length=args.max_length,
    )


class _HeldOutPerSetting(AgoraTrainer):
    """Agora as the library runs it, plus every trained model's score on the official dev set, for analysis only:
    it lets selection rules be compared on the same runs (nothing in the run reads it)."""

    def __init__(self, *args, agora_held_out_dataset, **kwargs):
        super().__init__(*args, agora_held_out_dataset=agora_held_out_dataset, **kwargs)
        self.held_out, self.per_setting = agora_held_out_dataset, []

    def _score_setting(self, setting_index: int) -> None:
        super()._score_setting(setting_index)
        result = self.agora_state.results[-1]
        held_out = self._agora_score(self.held_out)[0]
        self.per_setting.append(
            {"round": self.agora_state.round, "setting": setting_index, "selection": result["selection_metric"]}
            | {"held_out": held_out}
        )


def run_cell(task, data, tokenizer, teacher_dir: Path, arm: str, budget: int, seed: int, args, space) -> dict:
    """One arm at one label budget and seed: Agora's rounds, Θ and splits, the arm's sampler picking the rows."""
    start = time.time()
    rows, pool, positions = labelled_and_pool(data["train"], seed, args.train_rows, args.pool_rows, task.text_columns)
    split = carve_dev_split(rows, args.dev_fraction, seed, text_columns=task.text_columns)
    share = args.selection_fraction / (1 - args.dev_fraction)
    carved = carve_dev_split(split["train"], share, seed + 1, text_columns=task.text_columns)
    train, dev, selection = carved["train"], split["dev"], carved["dev"]
    steps = steps_per_round(len(train), budget, args)
    sampler_name, sampler = ARM_SAMPLERS[arm], None
    sampler_kwargs = {}
    if sampler_name == "contextual":
        sampler_kwargs = {"model": args.mlm, "min_similarity": args.band[0], "max_similarity": args.band[1]}
    student = extract_student(task, args.student_layers, seed)
    if sampler_name == "pool" and args.pool_space in FIXED_SPACES:
        sampler = _fixed_pool_sampler(pool, space, positions, args)
    agora_args = AgoraArguments(
        tempfile.mkdtemp(prefix="agora_active_"),
        agora_rounds=args.rounds,
        max_steps=steps,
        agora_patience=0,
        agora_max_length=args.max_length,
        agora_hyperparameter_space=args.theta,
        agora_metric=args.metric or _headline(task.name),
        agora_allow_weak_teacher=args.allow_weak_teacher,
        agora_sampler=sampler_name or "embedding_neighbours",
        agora_sampler_kwargs=sampler_kwargs,
        agora_label_budget=0 if sampler_name is None else budget,
        replace_fraction=args.replace_fraction,  # the token samplers' (kd_agora_contextual's) own settings
        num_neighbours=args.num_neighbours,
        teacher_row_weight=args.teacher_weight,
        agora_selection_tolerance=args.selection_tolerance,
        agora_pool_balance=args.pool_balance and sampler_name == "pool",
        soft_labels=True,
        distill_train_rows=True,
        distill_alpha=1.0,
        **common_args(seed, args),
    )
    trainer = _HeldOutPerSetting(
        model=student,
        args=agora_args,
        train_dataset=train,
        agora_dev_dataset=dev,
        agora_selection_dataset=selection,
        agora_pool=pool if sampler_name and sampler_name.startswith("pool") and sampler is None else None,
        agora_held_out_dataset=data["validation"],
        sampler=sampler,
        teacher=(
            BertForSequenceClassification.from_pretrained(teacher_dir),
            AutoTokenizer.from_pretrained(teacher_dir),
        ),
        processing_class=tokenizer,
    )
    output = trainer.train()
    trainer.agora_best = (output.metrics["agora_best_round"], output.metrics["agora_best_setting"])
    generated = trainer.agora_generated
    gold = {}
    if (
        len(generated) and sampler_name != "contextual"
    ):  # pool rows: their hidden gold labels say how noisy the teacher is
        keys = set(zip(*(list(generated[c]) for c in task.text_columns)))
        for row, label in zip(zip(*(list(data["train"][c]) for c in task.text_columns)), data["train"]["label"]):
            if row in keys:
                gold[row] = label
    added = list(zip(*(list(generated[c]) for c in task.text_columns)))
    kept = [r.kept for r in trainer.agora_history]
    agreements = [r.teacher_agreement for r in trainer.agora_history]
    return score(trainer, data["validation"]) | {
        "task": task.name,
        "arm": _label(arm, args.variant),
        "budget": budget,
        "seed": seed,
        "rows": {"train": len(train), "dev": len(dev), "selection": len(selection), "pool": len(pool)},
        "steps_per_round": steps,
        "lineage_steps": _lineage_steps(trainer),
        "total_steps": output.global_step,
        "labels_spent": trainer.agora_state.labels_spent,
        "source_agreement": (
            float(np.nansum(np.multiply(kept, agreements)) / sum(kept))
            if sum(kept) and not np.isnan(agreements[0])
            else None
        ),
        "gold_agreement": (
            float(np.mean([gold[r] == y for r, y in zip(added, generated["label"])])) if gold else None
        ),
        "history": [r.to_dict() for r in trainer.agora_history],
        "per_setting": trainer.per_setting,
        "added_label_counts": np.bincount(np.asarray(generated["label"], dtype=np.int64), minlength=2).tolist()
        if len(generated)
        else [],
        "added_gold_label_counts": np.bincount([gold[r] for r in added if r in gold], minlength=2).tolist()
        if gold
        else [],
        "teacher_report": trainer.agora_teacher_report,
        "selected_by": trainer.agora_selected_by,
        "best": list(trainer.agora_best),
        "wall_s": time.time() - start,
    }


def sampler_agreement(task, data, tokenizer, teacher_dir: Path, seed: int, args) -> dict:
    """Teacher-source agreement per sampler, without training: every row of the seed's Agora dev split is a source,
    each sampler gives `samples_per_error` rows near it, the teacher labels them; the share it labels like the
    source's gold label (and, for pool rows, like their own hidden gold label)."""
    rows, pool, positions = labelled_and_pool(data["train"], seed, args.train_rows, args.pool_rows, task.text_columns)
    dev = carve_dev_split(rows, args.dev_fraction, seed, text_columns=task.text_columns)["dev"]
    sources = list(zip(*(list(dev[c]) for c in task.text_columns)))
    gold_of = dict(zip(zip(*(list(data["train"][c]) for c in task.text_columns)), data["train"]["label"]))
    teacher = BertForSequenceClassification.from_pretrained(teacher_dir).eval()
    labeller = AgoraTeacher(
        teacher, teacher.config.label2id, AutoTokenizer.from_pretrained(teacher_dir), args.max_length
    )
    student = extract_student(task, args.student_layers, seed)
    token = dict(
        replace_fraction=args.replace_fraction, num_neighbours=args.num_neighbours, max_length=args.max_length
    )
    samplers = {
        "embedding_neighbours": EmbeddingNeighbourSampler(student, tokenizer, **token),
        "pool (student space)": PoolSampler(pool, student, tokenizer, max_length=args.max_length),
        **{
            f"pool ({label})": _fixed_pool_sampler(
                pool, fixed_space(task, data["train"], args, space, teacher_dir), positions, args
            )
            for space, label in (("encoder", "MiniLM encoder"), ("teacher", "teacher's encoder"))
        },
    }
    if args.mlm:
        samplers["masked_lm (trained head)"] = MaskedLMSampler(args.mlm, **token)
        samplers["contextual (trained head)"] = ContextualSampler(
            args.mlm, min_similarity=args.band[0], max_similarity=args.band[1], **token
        )
    result = {"task": task.name, "seed": seed, "sources": len(sources), "per_source": args.samples_per_error}
    known = {row_key(r) for r in zip(*(list(rows[c]) for c in task.text_columns))}
    for name, sampler in samplers.items():
        sampler.prepare(text_columns=task.text_columns, known_rows=known, held_out_rows=set(), min_rows=1)
        found = sampler.sample(sources, args.samples_per_error, torch.Generator().manual_seed(seed))
        pairs = [(i, row) for i, variants in enumerate(found) for row in variants]
        labels = labeller([row for _, row in pairs]).labels.tolist()
        entry = {
            "rows": len(pairs),
            "agrees_with_source": float(np.mean([y == dev[i]["label"] for (i, _), y in zip(pairs, labels)])),
        }
        if name.startswith("pool"):
            entry["agrees_with_own_gold"] = float(np.mean([y == gold_of[row] for (_, row), y in zip(pairs, labels)]))
        result[name] = entry
        print(name, json.dumps(entry), flush=True)
    return result


def main_active(args, data, tokenizer, tasks, teachers) -> None:
    """Run every (task, seed, budget, arm) cell not yet in --cache-dir, then the table, JSON and plot."""
    fingerprints = {name: _teacher_fingerprint(folder) for name, folder in teachers.items()}
    if "kd_agora_contextual" in args.arms:
        if not args.mlm or not (Path(args.mlm) / "config.json").is_file():
            raise SystemExit(
                f"--mlm {args.mlm!r}: the contextual arm needs a masked LM folder (train MiniLM's head with "
                "recipes/pretrain.py, see README), or leave kd_agora_contextual out of --arms."
            )
        fingerprints["mlm"] = _teacher_fingerprint(Path(args.mlm))
    if args.agreement:
        found = []
        for task in tasks:
            found.append(sampler_agreement(task, data[task.name], tokenizer, teachers[task.name], args.seeds[0], args))
        Path(args.out).write_text(json.dumps({"args": vars(args), "agreement": found}, indent=1))
        return
    cells = []
    for seed in args.seeds:  # seeds outermost: a run cut short has paired results for every arm and budget
        for task in tasks:
            space = None
            if args.pool_space in FIXED_SPACES and "kd_agora_pool" in args.arms and not args.report_only:
                space = fixed_space(task, data[task.name]["train"], args, args.pool_space, teachers[task.name])
            for budget in args.budgets:
                for arm in args.arms:
                    path = _cell_path(args, task.name, arm, budget, seed)
                    settings = _cell_settings(args, fingerprints, task.name, arm)
                    if path.is_file():
                        cell = json.loads(path.read_text())
                        changed = sorted(
                            k for k in settings if cell["settings"].get(k, _SETTING_DEFAULTS.get(k)) != settings[k]
                        )
                        if changed:
                            raise SystemExit(
                                f"{path} was computed with other settings ({', '.join(changed)}); pass another "
                                "--cache-dir or a --variant to keep both."
                            )
                    elif args.report_only:
                        continue
                    else:
                        cell = run_cell(
                            task, data[task.name], tokenizer, teachers[task.name], arm, budget, seed, args, space
                        )
                        cell["settings"] = settings
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(json.dumps(cell, indent=1))
                        print(
                            json.dumps(
                                {
                                    k: cell[k]
                                    for k in (
                                        "task",
                                        "arm",
                                        "budget",
                                        "seed",
                                        "accuracy",
                                        "f1",
                                        "labels_spent",
                                        "lineage_steps",
                                        "wall_s",
                                    )
                                }
                            ),
                            flush=True,
                        )
                    cells.append(cell)
    Path(args.out).write_text(json.dumps({"args": vars(args), "cells": cells}, indent=1))
    cached = [
        json.loads(path.read_text())
        for task in tasks
        for path in sorted((Path(args.cache_dir) / task.name).glob("*/budget*_seed*.json"))
    ]  # the table covers every cell of these tasks in the cache: earlier phases and variants included
    arms = sorted({c["arm"] for c in cached}, key=lambda a: (_base_order(a), a))
    summary = summarise_active(cached, arms, sorted({c["budget"] for c in cached}))
    print(summary)
    Path(args.out).with_suffix(".txt").write_text(summary + "\n")
    if args.plots and cached:
        plot_active(cached, arms, str(Path(args.out).with_suffix("")))


def _base_order(label: str) -> int:
    return ACTIVE_ARMS.index(label.split("@")[0])


def summarise_active(cells: list[dict], arms, budgets) -> str:
    """Per task and budget: each arm's mean ± std and seeds; Agora (pool)'s paired gains over random and uncertainty;
    teacher agreement per arm; the goals (from 500 labels up: >= random + 1 and >= uncertainty)."""
    lines = []
    for task in sorted({c["task"] for c in cells}):
        headline = _headline(task)
        lines.append(f"\n{task}: official dev set {headline} (%), mean +- std over seeds [n]")
        present = [b for b in budgets if any(c["task"] == task and c["budget"] == b for c in cells)]
        lines.append(f"{'arm':21}" + "".join(f"{b:>22}" for b in present))
        table = {}
        for arm in arms:
            row = f"{arm:21}"
            for budget in present:
                runs = {
                    c["seed"]: c[headline] * 100
                    for c in cells
                    if (c["task"], c["arm"], c["budget"]) == (task, arm, budget)
                }
                table[arm, budget] = runs
                values = list(runs.values())
                row += (
                    f"{statistics.mean(values):10.2f} +- {_spread(values):4.2f} [{len(values)}]"
                    if values
                    else f"{'-':>22}"
                )
            lines.append(row)
        ours_arms = [arm for arm in arms if arm.split("@")[0] in ("kd_agora_pool", "kd_agora_contextual")]
        for ours_arm in ours_arms:
            for baseline, need in (("kd_random", 1.0), ("kd_uncertainty", 0.0), ("kd", 0.0)):
                if baseline not in arms:
                    continue
                for budget in present:
                    ours, theirs = table[ours_arm, budget], table[baseline, budget]
                    seeds = sorted(set(ours) & set(theirs))
                    if not seeds:
                        continue
                    gains = [ours[s] - theirs[s] for s in seeds]
                    gain = statistics.mean(gains)
                    goal = ""
                    if budget >= 500 and baseline != "kd" and ours_arm == "kd_agora_pool":
                        goal = "  goal met" if gain >= need else f"  goal MISSED by {need - gain:.2f}"
                    lines.append(
                        f"{ours_arm} - {baseline} at {budget}: {gain:+.2f} +- {_spread(gains):.2f} points, wins "
                        f"{sum(g > 0 for g in gains)}/{len(seeds)} (goal >= {need:+g}){goal}"
                    )
        for arm in arms:
            runs = [c for c in cells if c["task"] == task and c["arm"] == arm and c.get("per_setting")]
            if runs:
                rules = [_selection_rules(c) for c in runs]
                lines.append(
                    f"selection rules, {arm} ({len(runs)} runs, official dev {headline}): "
                    + "; ".join(
                        f"{rule} {statistics.mean(r[rule][1] for r in rules):.2f} "
                        f"(rounds {','.join(str(r[rule][0]) for r in rules)})"
                        for rule in rules[0]
                    )
                )
        for arm in arms:
            runs = [c for c in cells if c["task"] == task and c["arm"] == arm]
            source = [c["source_agreement"] for c in runs if c.get("source_agreement") is not None]
            gold = [c["gold_agreement"] for c in runs if c.get("gold_agreement") is not None]
            counts = [c["added_label_counts"] for c in runs if c.get("added_label_counts")]
            if counts:
                shares = [count[1] / sum(count) for count in counts]
                lines.append(
                    f"label 1 among the rows {arm} added (teacher's labels): {statistics.mean(shares):.3f} "
                    f"({min(shares):.3f}-{max(shares):.3f}, {len(counts)} runs)"
                )
            if source or gold:
                lines.append(
                    f"teacher agreement {arm}: with the source row's gold label "
                    f"{statistics.mean(source) if source else float('nan'):.3f}; with the added row's hidden gold label "
                    f"{statistics.mean(gold) if gold else float('nan'):.3f} ({len(runs)} runs)"
                )
    return "\n".join(lines)


def _selection_rules(cell: dict) -> dict[str, tuple[int, float]]:
    """(round, official dev score in %) of the model each rule keeps, from one run's record of every trained model:
    what it shipped (`selection_tolerance`), the highest selection score of any round (tolerance 0: the first
    of equals, as the library breaks ties), and the last round's best by the selection split."""
    models = cell["per_setting"]
    highest = max(models, key=lambda m: m["selection"])  # max keeps the first of equals
    last = max((m for m in models if m["round"] == models[-1]["round"]), key=lambda m: m["selection"])
    headline = _headline(cell["task"])
    return {
        "shipped": (cell["best"][0], cell[headline] * 100),
        "tolerance 0": (highest["round"], highest["held_out"] * 100),
        "last round": (last["round"], last["held_out"] * 100),
    }


def plot_active(cells: list[dict], arms, prefix: str) -> None:
    """Score against teacher labels spent, one line per arm (KD: the same steps, no labels), one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({c["task"] for c in cells})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        headline = _headline(task)
        for arm in arms:
            budgets = sorted({c["budget"] for c in cells if c["task"] == task and c["arm"] == arm})
            if not budgets:
                continue
            values = [
                [c[headline] * 100 for c in cells if (c["task"], c["arm"], c["budget"]) == (task, arm, b)]
                for b in budgets
            ]
            means = [statistics.mean(v) for v in values]
            spreads = [_spread(v) for v in values]
            label = "kd (0 labels, same steps)" if arm == "kd" else arm
            ax.errorbar(
                budgets,
                means,
                yerr=spreads,
                marker="o",
                capsize=3,
                label=label,
                linestyle="--" if arm == "kd" else "-",
            )
        ax.set_xscale("log")
        ax.set_xticks(sorted({c["budget"] for c in cells if c["task"] == task}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("teacher labels spent")
        ax.set_ylabel(f"{headline} on the official dev set (%)")
        seeds = len({c["seed"] for c in cells if c["task"] == task})
        ax.set_title(f"{task}: up to {seeds} seeds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{prefix}_budget.png", dpi=100)
    plt.close(fig)


# Arguments that do not change a run's numbers: where it goes, what is shown, and which tasks and seeds are asked for.
# The teacher is compared by its weights, so how it was made (or where it is cached) is not compared again.
_NOT_DECISIVE = (
    *("tasks", "seeds", "out", "plots", "no_bars", "report", "teachers_only", "data_dir"),
    *("teacher", "teacher_dir", "teacher_rows", "teacher_epochs"),
    *("active", "arms", "budgets", "cache_dir", "selection_fraction", "pool_rows", "pool_space", "pool_balance"),
    "teacher_weight",
    "selection_tolerance",
    *("mlm", "report_only", "agreement", "band", "variant"),  # the active comparison's own settings
)


def _teacher_fingerprint(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()[:16]


def finished_runs(args, fingerprints: dict[str, str]) -> list[dict]:
    """The runs already in --out, reused only when every argument that decides a number and the teacher's weights
    are the same; otherwise a clear error (never an overwrite of someone's results)."""
    path = Path(args.out)
    if not path.exists():
        return []
    try:
        saved = json.loads(path.read_text())
        saved_args, results = saved["args"], saved["results"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise SystemExit(f"{path} exists and is not an agora_glue.py result; pass another --out.") from None
    changed = sorted(
        k
        for k in set(saved_args) | set(vars(args))
        if k not in _NOT_DECISIVE and saved_args.get(k) != vars(args).get(k)
    )
    if changed:
        raise SystemExit(
            f"{path} holds runs made with other settings ({', '.join(changed)}); pass another --out to keep both."
        )
    for result in results:
        if result["task"] in fingerprints and result.get("teacher") != fingerprints[result["task"]]:
            raise SystemExit(f"{path} holds {result['task']} runs made with another teacher; pass another --out.")
    return results


def report(results: list[dict], args) -> None:
    """The table (printed and written next to --out) and, with --plots, the figures."""
    summary = summarise(results)
    print(summary)
    Path(args.out).with_suffix(".txt").write_text(summary + "\n")
    if args.plots:
        plot(results, str(Path(args.out).with_suffix("")))


if __name__ == "__main__":
    main()
