"""OSE, the FPTAS of de Wynter & Perry (2020) that extracted Bort from RoBERTa-large, for any parent family of
`families.FAMILIES` (encoders and decoder LLMs).

`OSESearch(...).run()` follows the paper's structure:

1. p(ξ) and i(ξ) for every candidate of the space, in closed form (`costs.py`); the maximum point T.
2. ABnC ordering and ε-trimming. Under the ABnC property a network is an input stage A, n copies of a block B
   and an output stage C, with A and C cheaper than the blocks, so p and i are affine and increasing in the depth
   and every block dimension; sorting by (p, i) is then a linear extension of cost dominance. The ordered space
   is cut into buckets of relative width ε in both p and i (bucket = (⌊log_{1+ε} p/p_min⌋, ⌊log_{1+ε} i/i_min⌋))
   and one candidate per bucket is kept, the largest (expected to be the most accurate): every discarded candidate
   has a kept one whose p and i are each within a factor 1 + ε of its own. A smaller ε keeps more candidates.
3. The error of each kept candidate is estimated by a short training run from its extracted weights (never full
   training): `steps = interval * ceil(1 / ε)` optimiser steps, the loss averaged over the last `interval` steps.
   The averaging window is an ε share of the budget, so tighter ε buys a longer, steadier estimate: the work is
   polynomial in 1/ε, as an FPTAS's must be. Objectives: "distill" (default), MSE between the candidate's final
   hidden states, through the best affine map to the parent's width (ridge least squares, closed form), and the
   parent's on unlabelled text; or "task", cross-entropy (or MSE for float labels) of a linear head on the first
   token; or "lm" for causal LMs, KL(parent || candidate) between the next-token distributions at temperature 1,
   the candidate keeping its own (extracted) LM head. Each batch's loss is divided by that of the best
   input-independent prediction on it, so ê reads like 1 - R² and stays comparable across batches and candidates.
4. The W-coefficient (`w_coefficient`) relative to T ranks the candidates; the Pareto front in (p, i, ê) and
   the lowest-W point are returned.

Candidates are shared out across Accelerate processes (each seeded by its architecture alone, so results do not
depend on the sharding), and each finished candidate is appended to a JSONL file, so a rerun resumes. The search
runs on the device Accelerate gives the process (`ose_state()`): an accelerator when there is one, else the CPU.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from .costs import LatencyModel, inference_flops, parameter_count, pareto_front
from .extract import compute_importance, extract_subnetwork
from .ose_config import OSEConfig
from .result import CandidateRecord, OSEResult
from .space import Architecture, SearchSpace


logger = logging.get_logger(__name__)

_TEXT_COLUMNS = ("text", "sentence", "content", "question", "premise", "document")
_PAIR_COLUMNS = (
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
)


def read_text_lines(path: str | os.PathLike, min_words: int = 4) -> list[str]:
    """Non-empty paragraphs of a raw text file such as WikiText's `wiki.valid.raw` (headings `= x =` dropped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if len(ln.split()) >= min_words and not ln.strip().startswith("=")]


def epsilon_buckets(params: np.ndarray, cost: np.ndarray, epsilon: float) -> np.ndarray:
    """Step 2: indices of one representative per ε-bucket, in ABnC (p, then i) order; see the module docstring.

    The representative is the last member of its bucket in that order, the largest: all members cost the same up to
    a factor 1 + ε, and the largest is the one expected to have the lowest error, so it ε-dominates the others.
    """
    _check_epsilon(epsilon)
    order = np.lexsort((cost, params))
    base = math.log1p(epsilon)
    bucket_p = np.floor(np.log(params[order] / params.min()) / base + 1e-9).astype(np.int64)
    bucket_i = np.floor(np.log(cost[order] / cost.min()) / base + 1e-9).astype(np.int64)
    keys = bucket_p * (int(bucket_i.max()) + 1) + bucket_i
    _, last_reversed = np.unique(keys[::-1], return_index=True)
    return order[np.sort(len(keys) - 1 - last_reversed)]


def w_coefficient(
    params: np.ndarray,
    cost: np.ndarray,
    error: np.ndarray,
    max_point: dict,
    weights: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """W(ξ) = max(w_p p(ξ)/p(T), w_i i(ξ)/i(T), w_e e(ξ)/e(T)); lower is better.

    T is the maximum point: the largest p and i of the space, and e(T) the error of the best input-independent
    predictor (the teacher's mean hidden state for "distill", the label prior for "task"), so every ratio reads
    "share of the worst case" and lies in (0, 1] for any useful candidate. The candidates compared are ε-bucket
    representatives, each standing for every architecture within a factor 1 + ε of its costs.

    Why a Chebyshev (max) scalarisation: its minimiser is always Pareto-optimal in (p, i, e) (up to ties), it can
    reach every point of the front, including on non-convex stretches that a weighted sum skips, and it picks the
    candidate whose worst relative cost is smallest: no model that is tiny but useless (e ≈ e(T)), and no model that
    is accurate but as large as the parent (p ≈ p(T)). `weights` trade the three off.
    """
    ratios = [
        np.asarray(value, dtype=np.float64) / top
        for value, top in (
            (params, max_point["params"]),
            (cost, max_point["inference_cost"]),
            (error, max_point["error"]),
        )
    ]
    return np.max(np.stack([w * r for w, r in zip(weights, ratios)]), axis=0)


def _check_epsilon(epsilon: float) -> None:
    if not (isinstance(epsilon, (int, float)) and 0 < epsilon <= 1):
        raise ValueError(
            f"epsilon must lie in (0, 1], got {epsilon!r}. Smaller values keep more candidates (e.g. 0.1)."
        )


def ose_state():
    """The Accelerate state OSE runs under: `PartialState()` (one accelerator per process) when an accelerator
    exists; else `PartialState(cpu=True)`, which under `accelerate launch --multi_gpu` on a CPU machine is what
    makes the processes one gloo group instead of independent single runs."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.accelerator.is_available())


def _candidate_seed(arch: Architecture, seed: int) -> int:
    """A seed that depends only on the architecture and the search seed: sharding cannot change a result."""
    return zlib.crc32(f"{arch.depth}-{arch.heads}-{arch.hidden}-{arch.intermediate}-{seed}".encode())


@dataclass
class _Targets:
    """The fixed data every candidate is trained and scored on, with the teacher's outputs and reference errors."""

    train: list[dict[str, torch.Tensor]]
    train_hidden: list[torch.Tensor | None]
    train_reference: list[float]
    eval: list[dict[str, torch.Tensor]]
    eval_hidden: list[torch.Tensor | None]
    eval_reference: list[float]


class OSESearch:
    """Optimal subarchitecture extraction over `space` for a `parent` of any family in `families.FAMILIES`.

    Args:
        parent: a model or a local folder / Hub id (loaded with `AutoModel`, or `AutoModelForCausalLM` for
            objective "lm"). `run()` moves it to the device Accelerate gives the process.
        args: an `OSEConfig` with every setting of the search (ε, s, objective, budgets, costs, output folder).
        space: the candidates; default `SearchSpace.from_config(parent.config)`.
        train_dataset: texts for the error estimates: a `datasets.Dataset`, or a list of strings.
        eval_dataset: optional held-out texts; each candidate's loss on them is recorded as `eval_error`.
        tokenizer: defaults to the parent's (when `parent` is a path).
        latency_model: for `inference_cost="latency"`; fitted on this device when not given.
    """

    def __init__(
        self,
        parent: PreTrainedModel | str | os.PathLike,
        args: OSEConfig | None = None,
        *,
        space: SearchSpace | None = None,
        train_dataset=None,
        eval_dataset=None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        latency_model: LatencyModel | None = None,
    ):
        args = OSEConfig() if args is None else args
        if not isinstance(args, OSEConfig):
            raise TypeError(f"args must be an OSEConfig, got {type(args).__name__}; e.g. OSEConfig(epsilon=0.5).")
        if train_dataset is None:
            raise ValueError(
                "train_dataset is required: texts (distill) or labelled texts (task) for the error estimates."
            )
        if isinstance(parent, (str, os.PathLike)):
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(parent)
            parent = (AutoModelForCausalLM if args.objective == "lm" else AutoModel).from_pretrained(parent)
        if tokenizer is None:
            raise ValueError("Pass tokenizer= when the parent is a model object rather than a path.")
        if args.objective == "lm" and not (type(parent).can_generate() and parent.get_output_embeddings() is not None):
            raise ValueError(
                f"objective='lm' distils next-token distributions and needs a causal LM with its head; got "
                f"{type(parent).__name__}. Load it with AutoModelForCausalLM, or use objective='distill'."
            )
        if tokenizer.pad_token is None:  # GPT-2, Llama: rows are padded to seq_len, and the mask hides the padding
            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.pad_token = tokenizer.eos_token
        self.args = args
        self.parent = parent.eval()
        self.device = next(parent.parameters()).device  # until run() places the parent where Accelerate says
        self.space = space if space is not None else SearchSpace.from_config(parent.config)
        self.tokenizer = tokenizer
        self.steps = args.steps
        self.latency_model = latency_model
        self.output_dir = Path(args.output_dir) if args.output_dir is not None else None
        self._train = self._encode(train_dataset, "train_dataset")
        self._eval = self._encode(eval_dataset, "eval_dataset") if eval_dataset is not None else None

    # ----- data -----

    def _encode(self, dataset, name: str) -> dict[str, torch.Tensor]:
        """Tokenised rows (fixed length, so every step costs the same) and, for "task", labels."""
        if isinstance(dataset, (list, tuple)):
            if not all(isinstance(t, str) for t in dataset):
                raise ValueError(f"{name} as a list must hold strings; got {type(dataset[0]).__name__} items.")
            first, second, labels = list(dataset), None, None
        else:
            columns = list(dataset.column_names)
            first_col, second_col = _find_text_columns(columns, self.args.text_column, name)
            first = list(dataset[first_col])
            second = list(dataset[second_col]) if second_col else None
            labels = list(dataset[self.args.label_column]) if self.args.label_column in columns else None
        if not first:
            raise ValueError(f"{name} is empty; pass at least one text.")
        if self.args.objective == "task" and labels is None:
            raise ValueError(
                f"objective='task' needs a '{self.args.label_column}' column in {name} (or label_column=...)."
            )
        encoded = self.tokenizer(
            first, second, truncation=True, max_length=self.args.seq_len, padding="max_length", return_tensors="pt"
        )
        out = {k: encoded[k] for k in ("input_ids", "attention_mask")}
        if self.args.objective == "task":
            out["labels"] = torch.tensor(labels)
        return out

    def _batches(self, data: dict[str, torch.Tensor], n_batches: int) -> list[dict[str, torch.Tensor]]:
        """`n_batches` batches cycling through the rows in order: every candidate sees exactly the same data."""
        rows = len(data["input_ids"])
        index = torch.arange(n_batches * self.args.batch_size) % rows
        return [
            {
                k: v[index[b * self.args.batch_size : (b + 1) * self.args.batch_size]].to(self.device)
                for k, v in data.items()
            }
            for b in range(n_batches)
        ]

    # ----- the FPTAS -----

    def _costs(self) -> tuple[np.ndarray, np.ndarray]:
        params = parameter_count(self.space)
        if self.args.inference_cost == "flops":
            return params, inference_flops(self.space, self.args.seq_len)
        if self.latency_model is None:
            self.latency_model = LatencyModel.fit(self.space, seq_len=self.args.seq_len, seed=self.args.seed)
            logger.warning(f"Latency model held-out error: {self.latency_model.holdout_error:.1%}.")
        return params, self.latency_model.predict(self.space)

    def settings(self) -> dict:
        """Everything that determines a candidate's numbers; a resumed run must match it."""
        digest = hashlib.sha256(self._train["input_ids"].numpy().tobytes()).hexdigest()[:16]
        return {
            "parent": self.space.parent_architecture.as_dict(),
            **self.args.result_settings(),
            "train_data": digest,
        }

    def run(self) -> OSEResult:
        from accelerate.utils import gather_object

        state = ose_state()
        self.device = state.device
        self.parent.to(self.device)
        params, cost = self._costs()  # step 1
        kept = epsilon_buckets(params, cost, self.args.epsilon)  # step 2
        if self.args.max_candidates is not None:
            kept = kept[: self.args.max_candidates]
        finished = self._load_finished(state)
        state.wait_for_everyone()  # every process reads the same finished set before anyone appends to it
        pending = [int(k) for k in kept if self.space[int(k)] not in finished]
        mine = pending[state.process_index :: state.num_processes]

        targets = self._prepare_targets()
        batches = self._batches(self._train, 4) if self.args.importance != "magnitude" else None
        scores = compute_importance(self.parent, batches, method=self.args.importance)
        new_records = []
        bar = tqdm(
            mine,
            desc=f"OSE candidates (rank {state.process_index})",
            disable=not self.args.show_progress or not state.is_main_process,
        )
        for index in bar:
            arch = self.space[index]
            record = self._evaluate(arch, float(params[index]), float(cost[index]), targets, scores)
            self._append(record, state.process_index)
            new_records.append(record.to_dict())
            bar.set_postfix(arch=str(arch), err=f"{record.error:.3f}")
        gathered = gather_object(new_records) if state.num_processes > 1 else new_records
        records = [*finished.values(), *(CandidateRecord.from_dict(r) for r in gathered)]
        kept_archs = {self.space[int(k)] for k in kept}
        records = sorted(
            (r for r in records if r.architecture in kept_archs), key=lambda r: (r.params, r.inference_cost)
        )
        return self._result(records, params, cost, float(np.mean(targets.train_reference)))

    def _result(self, records: list[CandidateRecord], params, cost, reference: float) -> OSEResult:
        # Errors are already relative to e(T) batch by batch, so T's error is 1; its mean loss is kept for reading.
        max_point = {
            "params": float(params.max()),
            "inference_cost": float(cost.max()),
            "error": 1.0,
            "reference_loss": reference,
        }
        p = np.array([r.params for r in records])
        i = np.array([r.inference_cost for r in records])
        e = np.array([r.error for r in records])
        w = w_coefficient(p, i, e, max_point, self.args.weights)
        for rec, value in zip(records, w):
            rec.w = float(value)
        front = [records[k].architecture for k in pareto_front(np.stack([p, i, e], axis=1))]
        best = min(records, key=lambda r: (r.w, r.error, r.params)).architecture
        return OSEResult(
            parent_architecture=self.space.parent_architecture,
            max_point=max_point,
            epsilon=self.args.epsilon,
            interval=self.args.interval,
            steps=self.steps,
            objective=self.args.objective,
            inference_cost_unit="flops" if self.args.inference_cost == "flops" else "latency_ms",
            seq_len=self.args.seq_len,
            space_size=len(self.space),
            records=records,
            front=front,
            best=best,
            parent_config=self.parent.config.to_dict(),
            settings=self.settings(),
            config=self.args.to_dict(),
        )

    # ----- step 3: error estimates -----

    @torch.no_grad()
    def _prepare_targets(self) -> _Targets:
        """Training and eval batches, the teacher's hidden states on them (distill), and per-batch reference errors.

        A batch's reference is the loss of the best input-independent prediction on it: the per-dimension variance
        of the teacher's hidden states over its tokens (distill), or the entropy of the label prior / the label
        variance over the training set (task). Dividing by it makes ê = 1 - R²-like and batches comparable.
        """
        train = self._batches(self._train, self.steps)
        evaluation = (
            self._batches(self._eval, math.ceil(len(self._eval["input_ids"]) / self.args.batch_size))
            if self._eval
            else []
        )
        if self.args.objective == "task":
            labels = self._train["labels"]
            if labels.is_floating_point():
                reference = float(labels.var(unbiased=False))
            else:
                prior = torch.bincount(labels).float() / len(labels)
                reference = float(-(prior[prior > 0] * prior[prior > 0].log()).sum())
            return _Targets(
                train,
                [None] * len(train),
                [reference] * len(train),
                evaluation,
                [None] * len(evaluation),
                [reference] * len(evaluation),
            )
        base = self.parent.base_model

        def reference(hidden, mask):
            if self.args.objective == "lm":  # KL to the batch's mean next-token distribution
                log_p = self._teacher_log_probs(hidden[mask])
                log_mean = torch.logsumexp(log_p, dim=0) - math.log(len(log_p))
                return float((log_p.exp() * (log_p - log_mean)).sum(-1).mean())
            return float(hidden[mask].var(dim=0, unbiased=False).mean())

        def teacher(batches):
            hidden = [
                base(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state for b in batches
            ]
            refs = [reference(h, b["attention_mask"].bool()) for h, b in zip(hidden, batches)]
            return hidden, refs

        return _Targets(train, *teacher(train), evaluation, *teacher(evaluation))

    def _evaluate(self, arch, params, cost, targets: _Targets, scores) -> CandidateRecord:
        seed = _candidate_seed(arch, self.args.seed)
        torch.manual_seed(seed)
        start = time.perf_counter()
        student = extract_subnetwork(self.parent, arch, importance=scores, seed=seed)
        student = student if self.args.objective == "lm" else student.base_model
        student.eval()  # no dropout: a short estimate measures capacity, and stays deterministic
        head = self._make_head(student, targets, arch)
        # The word embeddings (most of a small encoder's weights) stay as extracted: updating them densely would
        # dominate every step, and a short run measures what the architecture's layers can do with them.
        student.get_input_embeddings().weight.requires_grad_(False)
        groups = [{"params": [p for p in student.parameters() if p.requires_grad]}]
        if self.args.objective == "task":
            groups.append({"params": list(head.parameters()), "lr": self.args.head_learning_rate})
        optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate)
        losses = []
        for batch, target in zip(targets.train, targets.train_hidden):
            loss = self._loss(student, head, batch, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().item())
        last = slice(len(losses) - self.args.interval, None)
        eval_error = None
        if targets.eval:
            with torch.no_grad():
                ratios = [
                    float(self._loss(student, head, b, t)) / r
                    for b, t, r in zip(targets.eval, targets.eval_hidden, targets.eval_reference)
                ]
            eval_error = float(np.mean(ratios))
        return CandidateRecord(
            architecture=arch,
            params=params,
            inference_cost=cost,
            error=float(np.mean(np.array(losses[last]) / np.array(targets.train_reference[last]))),
            raw_loss=float(np.mean(losses[last])),
            steps=self.steps,
            seconds=time.perf_counter() - start,
            seed=seed,
            eval_error=eval_error,
        )

    def _make_head(self, student, targets: _Targets, arch: Architecture) -> nn.Module:
        """Distill: the best affine map from the candidate's width to the parent's, by ridge least squares over all
        training tokens, then fixed (a closed-form optimum that Adam's noisy steps would only degrade); task: a fresh
        linear classifier, trained with `head_learning_rate`."""
        if self.args.objective == "task":
            labels = self._train["labels"]
            return nn.Linear(arch.hidden, 1 if labels.is_floating_point() else int(labels.max()) + 1).to(self.device)
        if self.args.objective == "lm":
            return nn.Identity()  # the candidate's own LM head, extracted with it
        xs, ys = [], []
        with torch.no_grad():
            for batch, target in zip(targets.train, targets.train_hidden):
                mask = batch["attention_mask"].bool()
                out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
                xs.append(out[mask])
                ys.append(target[mask])
            x, y = torch.cat(xs), torch.cat(ys)
            x_mean, y_mean = x.mean(0), y.mean(0)
            xc = x - x_mean
            ridge = 1e-2 * xc.pow(2).sum() / x.shape[1] + 1e-8
            solution = torch.linalg.solve(
                xc.T @ xc + ridge * torch.eye(x.shape[1], device=x.device, dtype=x.dtype), xc.T @ (y - y_mean)
            )
        head = nn.Linear(arch.hidden, y.shape[-1]).to(device=x.device, dtype=x.dtype)
        head.weight.data.copy_(solution.T)
        head.bias.data.copy_(y_mean - x_mean @ solution)
        return head.requires_grad_(False)

    @torch.no_grad()
    def _teacher_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """The parent's next-token log-probabilities from its final hidden states (its LM head; temperature 1)."""
        return torch.log_softmax(self.parent.get_output_embeddings()(hidden).float(), dim=-1)

    def _loss(self, student, head, batch, target) -> torch.Tensor:
        if self.args.objective == "lm":
            mask = batch["attention_mask"].bool()
            logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            log_q = torch.log_softmax(logits[mask].float(), dim=-1)
            log_p = self._teacher_log_probs(target[mask])
            return (log_p.exp() * (log_p - log_q)).sum(-1).mean()
        hidden = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        if self.args.objective == "distill":
            mask = batch["attention_mask"].bool()
            return nn.functional.mse_loss(head(hidden[mask]), target[mask])
        logits = head(hidden[:, 0])
        labels = batch["labels"]
        if labels.is_floating_point():
            return nn.functional.mse_loss(logits.squeeze(-1), labels)
        return nn.functional.cross_entropy(logits, labels)

    # ----- resumability -----

    def _load_finished(self, state) -> dict[Architecture, CandidateRecord]:
        if self.output_dir is None:
            return {}
        meta = self.output_dir / "search.json"
        settings = self.settings()
        if meta.exists():
            saved = json.loads(meta.read_text())
            if saved != settings:
                changed = sorted(k for k in settings if saved.get(k) != settings[k])
                raise ValueError(
                    f"{self.output_dir} holds a search with different settings ({', '.join(changed)}); resume with the "
                    "same settings, or use another output_dir."
                )
        state.wait_for_everyone()
        if state.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps(settings, indent=1))
        finished = {}
        for path in sorted(self.output_dir.glob("candidates-*.jsonl")) if self.output_dir.exists() else []:
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        record = CandidateRecord.from_dict(json.loads(line))
                    except (json.JSONDecodeError, TypeError, KeyError):
                        continue  # a line cut short by a crash: that candidate is simply evaluated again
                    finished[record.architecture] = record
        return finished

    def _append(self, record: CandidateRecord, rank: int) -> None:
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / f"candidates-{rank}.jsonl", "a") as f:
            f.write(json.dumps(record.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _find_text_columns(columns: list[str], text_column, name: str) -> tuple[str, str | None]:
    if text_column is not None:
        wanted = (text_column,) if isinstance(text_column, str) else tuple(text_column)
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise ValueError(f"{name} has no column {missing[0]!r}; its columns are {columns}.")
        return wanted[0], (wanted[1] if len(wanted) > 1 else None)
    for pair in _PAIR_COLUMNS:
        if all(c in columns for c in pair):
            return pair
    for column in _TEXT_COLUMNS:
        if column in columns:
            return column, None
    raise ValueError(
        f"{name} has no text column: found columns {columns}, expected one of {list(_TEXT_COLUMNS)} or a pair "
        f"{[list(p) for p in _PAIR_COLUMNS]}. Pass text_column='your_column'."
    )


__all__ = ["OSESearch", "epsilon_buckets", "ose_state", "read_text_lines", "w_coefficient"]
