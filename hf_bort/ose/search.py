"""OSE, the FPTAS of de Wynter & Perry (2020) that extracted Bort from RoBERTa-large, for any parent family of
`families.FAMILIES` (encoders and decoder LLMs).

`OSESearch(...).run()` follows the paper's structure:

1. p(ξ) and i(ξ) for every candidate of the space, in closed form (`costs.py`); the maximum point T. Constraints
   that do not depend on weights (parameters, FLOPs, latency and speed-up predicted on this device) cut the space
   before anything is trained.
2. The ε-cover (`epsilon_cover`): every candidate gets a kept one that contains it and costs at most 1 + ε times as
   much in p and in i. Under the assumption that a candidate containing another errs no more, the best W over the
   kept set is within 1 + ε of the best over the space.
3. The error of kept candidates is estimated by short training runs from their extracted weights (never full
   training), one per setting θ of Θ (`hyperparameter_space`, e.g. learning rates), and ê is the best over Θ, as
   in the paper. Each run takes `steps = max(s, ceil(K / (ε·sqrt(s))))` optimiser steps (K = `step_scale`,
   s = `interval`): we read the paper's runtime bound |Θ||B||Ξ| / (ε·s^{3/2}) as counting averaging windows of s
   steps, K / (ε·s^{3/2}) of them per candidate and setting; see `OSEConfig.steps`. The runs cycle through the
   fitting rows in a fresh seeded order each pass, so a long budget uses all of them. ê is **held out**: the
   training texts are split (seeded, `holdout_fraction`) into fitting and held-out rows, or `eval_dataset` is the
   held-out set; the short run and any fitted projection or head see only the fitting rows. What a run minimises
   is the objective's (`objectives.py`: distillation of hidden states or layers, a labelled task, a fine-tuned
   classifier's predictions, a causal LM's next tokens). A branch and bound (`_BranchAndBound`) visits the kept
   set largest first and never trains a candidate whose lower bound on W reaches the best W found.
4. The W-coefficient (`w_coefficient`) relative to T ranks the candidates; the Pareto front in (p, i, ê) and
   the lowest-W point are returned, with what the search proves (`OSEResult.guarantee`).

Candidates are shared out across Accelerate processes (each seeded by its architecture alone, and the rounds of
the branch and bound a function of the records alone, so results do not depend on the sharding), and each finished
candidate is appended to a JSONL file, so a rerun resumes. The search runs on the device Accelerate gives the
process (`ose_state()`): an accelerator when there is one, else the CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import platform
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ..errors import load_checkpoint
from .costs import LatencyModel, inference_flops, parameter_count, pareto_front
from .extract import ImportanceScores, compute_importance, extract_subnetwork, layer_allocation
from .journal import (
    Journal,
    arch_key,
    check_search_folder,
    fingerprint_space,
    fingerprint_state_dict,
    fingerprint_tensors,
    fingerprint_tokenizer,
    read_latency_entry,
    write_latency_entry,
)
from .latency import Speedup, measure_latency_ms, measure_speedups
from .objectives import OBJECTIVES, Targets
from .ose_config import OSEConfig
from .result import CandidateRecord, OSEResult
from .space import Architecture, SearchSpace, layer_sizes


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


def epsilon_cover(dims: np.ndarray, params: np.ndarray, cost: np.ndarray, epsilon: float) -> np.ndarray:
    """Step 2: the kept candidates, largest first: for every candidate ξ, one kept κ that contains it (κ ≥ ξ in every
    dimension) and costs at most a factor 1 + ε more in both p and i.

    The (1 + ε) guarantee. Assume ê is monotone: a candidate that contains another (at least as deep, with at least
    as many heads, as wide a hidden size, head and FFN) errs no more. Then the κ kept for the W-optimum ξ* has
    W(κ) ≤ (1 + ε) W(ξ*), because each ratio of W = max(p/p(T), i/i(T), ê) grows by at most 1 + ε. Bucketing by
    (p, i) alone (the paper's trimming) keeps one point per cost cell and misses optima whose cell-mate is
    larger in cost but smaller in a dimension the error depends on; containment is what the bound needs.

    The cover is a greedy net: candidates are visited largest first (by the sum of their grid ranks, then p, then i:
    an order in which every candidate comes after those that contain it), and a candidate no kept one covers is
    kept. Two kept points in one (p, i) cell of relative width ε never contain each other, so the kept set is at most
    the number of cells, O((log(p_max/p_min) · log(i_max/i_min)) / ε²), times the widest antichain of the grid:
    polynomial in 1/ε.

    Args:
        dims: (N, k) the candidates' dimensions; containment is "≥ in every column".
        params / cost: p(ξ) and i(ξ), positive.
    """
    _check_epsilon(epsilon)
    dims = np.asarray(dims, dtype=np.int64)
    ranks = np.stack([np.unique(column, return_inverse=True)[1].reshape(-1) for column in dims.T], axis=1)
    order = np.lexsort((-cost, -params, -ranks.sum(1)))
    by_params = np.argsort(params, kind="stable")
    sorted_params = params[by_params]
    covered = np.zeros(len(params), dtype=bool)
    kept = []
    for index in order:
        if covered[index]:
            continue
        kept.append(index)
        # only candidates within a factor 1 + ε below it in p can be covered by it
        low = np.searchsorted(sorted_params, params[index] / (1 + epsilon) * (1 - 1e-12), side="left")
        high = np.searchsorted(sorted_params, params[index], side="right")
        window = by_params[low:high]
        inside = (dims[window] <= dims[index]).all(axis=1) & (
            cost[window] * (1 + epsilon) >= cost[index] * (1 - 1e-12)
        )
        covered[window[inside]] = True
    return np.array(kept, dtype=np.int64)


def w_coefficient(
    params: np.ndarray,
    cost: np.ndarray,
    error: np.ndarray,
    max_point: dict,
    weights: Sequence[float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """W(ξ) = max(w_p p(ξ)/p(T), w_i i(ξ)/i(T), w_e e(ξ)/e(T)); lower is better.

    This is hf_bort's definition, not the paper's: de Wynter & Perry (2020) name a W-coefficient but never publish
    its formula, so this scalarisation is this project's choice, documented here and in the README.

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


# Rows per forward-only batch when scoring the held-out rows (no gradients: larger batches cost less per row).
EVAL_BATCH_SIZE = 64
# Under the monotone assumption a candidate errs at least as much as any evaluated one that contains it; an error
# is capped at this (the constant predictor's, e(T) = 1) before it bounds smaller candidates, since any candidate
# can learn the constant: a diverged run of a large candidate must not rule out everything below it.
_ERROR_BOUND_CAP = 1.0
MONOTONE_ASSUMPTION = (
    "ê is monotone: a candidate that contains another (at least as deep, with as many heads, as wide a hidden "
    "size, head and FFN) has no larger ê"
)


class _BranchAndBound:
    """Which kept candidates still need an error estimate, given those evaluated so far (step 3, exactly).

    W(κ) ≥ max(w_p p/p(T), w_i i/i(T)) always, and under the monotone assumption ê(κ) ≥ ê(ρ) for every evaluated ρ
    that contains κ; a candidate whose lower bound reaches the best W found cannot improve on it, so it is never
    trained. The kept set is visited largest first, `size` candidates a round, so bounds come from large candidates
    down to the ones they contain; the rounds are a function of the records alone, so a resumed or sharded search
    evaluates exactly what an uninterrupted single process does.
    """

    def __init__(
        self,
        dims: np.ndarray,
        cost_ratio: np.ndarray,
        error_weight: float,
        monotone: bool,
        size: int,
        order: np.ndarray | None = None,
        capped_params: np.ndarray | None = None,
    ):
        self.dims, self.cost_ratio, self.error_weight = dims, cost_ratio, error_weight
        self.monotone, self.size = monotone, size
        self.capped_params = capped_params  # set: `capped_order`, recomputed without the excluded candidates
        if capped_params is not None:
            order = capped_order(dims, capped_params)
        self.order = np.arange(len(dims)) if order is None else np.asarray(order)
        self._order_without = (frozenset(), self.order)
        self._floor, self._folded = np.zeros(len(dims)), set()  # error bounds from the evaluations folded in so far

    def _order(self, excluded: frozenset) -> np.ndarray:
        """The visiting order. In the capped order, a candidate measured not to meet the constraints no longer
        counts as containing others: the largest candidates inside it become maximal and take its turn (else a
        depth whose maximal candidates all miss a speed budget is never tried again under the cap)."""
        if self.capped_params is None or not excluded:
            return self.order
        if self._order_without[0] != excluded:
            keep = np.array([k for k in range(len(self.dims)) if k not in excluded], dtype=np.int64)
            self._order_without = (excluded, keep[capped_order(self.dims[keep], self.capped_params[keep])])
        return self._order_without[1]

    def lower_bounds(self, evaluated: dict[int, float]) -> np.ndarray:
        """W's lower bound for every kept candidate; the exact W for the evaluated ones (keyed by kept position).
        Evaluations only ever add up, so each is folded into the bounds once."""
        if self.monotone:
            for position in evaluated.keys() - self._folded:
                contained = (self.dims <= self.dims[position]).all(axis=1)
                self._floor[contained] = np.maximum(self._floor[contained], min(evaluated[position], _ERROR_BOUND_CAP))
                self._folded.add(position)
        error = self._floor.copy()
        for position, value in evaluated.items():
            error[position] = value
        return np.maximum(self.cost_ratio, self.error_weight * error)

    def open(self, evaluated: dict[int, float], excluded: frozenset = frozenset()) -> list[int]:
        """Kept positions, in order, neither evaluated, nor ruled out by the best W found, nor `excluded` (measured
        not to meet the constraints: outside the space, and no bound on what they contain)."""
        bounds = self.lower_bounds(evaluated)
        best = min((bounds[p] for p in evaluated), default=math.inf)
        return [int(p) for p in self._order(excluded) if p not in evaluated and p not in excluded and bounds[p] < best]

    def next_round(
        self, evaluated: dict[int, float], budget: int | None, excluded: frozenset = frozenset()
    ) -> list[int]:
        size = self.size if budget is None else min(self.size, max(0, budget - len(evaluated)))
        return self.open(evaluated, excluded)[:size]

    def certificate(self, evaluated: dict[int, float], epsilon: float, excluded: frozenset = frozenset()) -> dict:
        """What the evaluated set proves: the factor within which the best W lies of the optimum over the whole space
        (1 + ε when nothing is left open; larger when `max_candidates` stopped the search early)."""
        open_ = self.open(evaluated, excluded)
        bounds = self.lower_bounds(evaluated)
        best = min((bounds[p] for p in evaluated), default=math.inf)
        floor = min([best, *(bounds[p] for p in open_)])
        return {
            "open": len(open_),
            "lower_bound": float(floor),
            # None: no finite bound (an open candidate's error may be 0, as when W is ê alone and nothing contains it)
            "factor": float((1 + epsilon) * best / floor) if floor > 0 else None,
        }


def capped_order(dims: np.ndarray, params: np.ndarray) -> np.ndarray:
    """The order in which a search for the lowest ê (W weights 0, 0, 1: the costs are a budget, not a trade-off)
    capped by `max_candidates` visits the kept candidates (positions into `dims`).

    First the maximal ones, that no other kept candidate contains: under the monotone assumption only they can hold
    the lowest ê, and a budget's best student is one of them. They take turns across depths, each depth's largest in
    p first, so that a cap is spent on shallow-and-wide and deep-and-narrow students alike rather than on near-copies
    of the largest shape (the largest-first order of the uncapped search spent a cap of 16 at ≥3.3x on MiniLM with 5
    variants of one 2-layer shape and never tried a 6-layer one). Then the rest, largest in p first. Any order leaves
    the branch and bound exact; only what a cap leaves unvisited depends on it.
    """
    dims = np.asarray(dims, dtype=np.int64)
    contained = np.zeros(len(dims), dtype=bool)
    for position, row in enumerate(dims):
        contained[position] = ((dims >= row).all(axis=1) & (dims != row).any(axis=1)).any()
    turn = np.zeros(len(dims), dtype=np.int64)
    for depth in np.unique(dims[:, 0]):
        members = np.flatnonzero(~contained & (dims[:, 0] == depth))
        turn[members[np.argsort(-params[members], kind="stable")]] = np.arange(len(members))
    return np.lexsort((-params, turn, contained))


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
    return zlib.crc32(f"{arch_key(arch)}-{seed}".encode())


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
        self.args = args
        self.objective = OBJECTIVES[args.objective](self)
        if isinstance(parent, (str, os.PathLike)):  # a bad folder is one sentence naming it, before the tokenizer
            parent_path = parent
            parent = load_checkpoint(self.objective.parent_class, parent_path, "OSE parent")
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(parent_path)
        if tokenizer is None:
            raise ValueError("Pass tokenizer= when the parent is a model object rather than a path.")
        self.objective.check_parent(parent)
        if tokenizer.pad_token is None:  # GPT-2, Llama: rows are padded to seq_len, and the mask hides the padding
            tokenizer = copy.deepcopy(tokenizer)
            tokenizer.pad_token = tokenizer.eos_token
        self.parent = parent.eval()
        self.device = next(parent.parameters()).device  # until run() places the parent where Accelerate says
        self.space = space if space is not None else SearchSpace.from_config(parent.config)
        self.tokenizer = tokenizer
        self.steps = args.steps
        self.latency_model = latency_model
        self.latency_calibration: dict | None = None  # how `_predicted_speed` scaled the fit, when it did
        # each candidate timed as built (per-layer sizes) in this run, by architecture: its speed-up over the parent
        # per shape, laid out as `Speedup.to_dict()`; a trained candidate carries it as `CandidateRecord.timing`
        self.timings: dict[Architecture, dict] = {}
        self.output_dir = Path(args.output_dir) if args.output_dir is not None else None
        self._train = self._encode(train_dataset, "train_dataset")
        self._eval = self._encode(eval_dataset, "eval_dataset") if eval_dataset is not None else None

    # ----- data -----

    def _encode(self, dataset, name: str) -> dict[str, torch.Tensor]:
        """Tokenised rows (fixed length, so every step costs the same) and the labels the objective uses."""
        if isinstance(dataset, (list, tuple)):
            if not all(isinstance(t, str) for t in dataset):
                raise ValueError(f"{name} as a list must hold strings; got {type(dataset[0]).__name__} items.")
            first, second, labels = list(dataset), None, None
        else:
            columns = list(dataset.column_names)
            first_col, second_col = find_text_columns(columns, self.args.text_column, name)
            first = list(dataset[first_col])
            second = list(dataset[second_col]) if second_col else None
            labels = list(dataset[self.args.label_column]) if self.args.label_column in columns else None
        if not first:
            raise ValueError(f"{name} is empty; pass at least one text.")
        if self.objective.needs_labels and labels is None:
            raise ValueError(
                f"objective={self.args.objective!r} needs a '{self.args.label_column}' column in {name} (or "
                "label_column=...)."
            )
        encoded = self.tokenizer(
            first, second, truncation=True, max_length=self.args.seq_len, padding="max_length", return_tensors="pt"
        )
        out = {k: encoded[k] for k in ("input_ids", "attention_mask")}
        if self.objective.uses_labels and labels is not None:
            out["labels"] = torch.tensor(labels)
        return out

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
        """Everything that determines a candidate's numbers; a resumed run must match it.

        The parent's weights, the tokenizer, the train and eval token ids and the grid are fingerprinted (sha256), so
        a parent of the same shape with other weights, or another eval file, is a different search.
        """
        if getattr(self, "_fingerprints", None) is None:
            self._fingerprints = {
                "parent_weights": fingerprint_state_dict(self.parent),
                "tokenizer": fingerprint_tokenizer(self.tokenizer),
                "train_data": fingerprint_tensors(self._train),
                "eval_data": fingerprint_tensors(self._eval) if self._eval is not None else None,
                "space": fingerprint_space(self.space),
            }
        return {
            "parent": self.space.parent_architecture.as_dict(),
            **self.args.result_settings(),
            **self._fingerprints,
        }

    def run(self) -> OSEResult:
        state = ose_state()
        self.device = state.device
        self.parent.to(self.device)
        # this run's claims (an earlier run's in this process are stale)
        self.journal = None if self.output_dir is None else Journal(
            self.output_dir, os.urandom(8).hex(), self.args.wait_timeout
        )  # fmt: skip
        if self.output_dir is not None:
            check_search_folder(self.output_dir)
        self._check_seq_len()
        params, cost = self._costs()  # step 1
        feasible = self._feasible(params, cost, state)  # constraints decided before anything is trained
        dims = self._dims()
        kept = feasible[epsilon_cover(dims[feasible], params[feasible], cost[feasible], self.args.epsilon)]  # step 2
        finished = self._load_finished(state)
        state.wait_for_everyone()  # every process reads the same finished set before anyone appends to it
        at_start = set(finished)
        weights = self.args.weights
        cost_ratio = np.maximum(weights[0] * params[kept] / params.max(), weights[1] * cost[kept] / cost.max())
        # W = ê alone (a search under a budget, as compress runs it) with a cap: maximal candidates first, across depths
        capped = self.args.max_candidates is not None and weights[0] == weights[1] == 0
        bounds = _BranchAndBound(
            dims[kept],
            cost_ratio,
            weights[2],
            self.args.monotone_bounds,
            self.args.candidates_per_round,
            capped_params=params[kept] if capped else None,
        )
        targets = self._prepare_targets()
        scores = self.importance()
        evaluated: dict[int, CandidateRecord] = {}  # kept position -> record
        bar = tqdm(
            total=len(kept),
            desc="OSE candidates (evaluated or ruled out by bounds)",
            disable=not self.args.show_progress or not state.is_main_process,
        )
        excluded: set[int] = set()  # kept positions measured not to meet a latency constraint
        while batch := bounds.next_round(
            {k: r.error for k, r in evaluated.items()}, self.args.max_candidates, frozenset(excluded)
        ):
            fails = self._measured_to_fail([int(kept[k]) for k in batch], finished)
            excluded.update(k for k, fail in zip(batch, fails) if fail)
            batch = [k for k, fail in zip(batch, fails) if not fail]
            if not batch:
                continue
            records = self._evaluate_round([int(kept[k]) for k in batch], params, cost, targets, scores, finished)
            evaluated.update(zip(batch, records))
            errors = {k: r.error for k, r in evaluated.items()}
            bar.n = len(kept) - len(bounds.open(errors, frozenset(excluded)))
            bar.set_postfix(evaluated=len(evaluated), best_w=f"{min(bounds.lower_bounds(errors)[list(errors)]):.3f}")
            bar.refresh()
        bar.close()
        if not evaluated:
            raise ValueError(
                f"No candidate meets the constraints {self.args.constraints()} as measured: the {len(excluded)} "
                "predicted to meet them were timed before training and all missed; relax the constraints or widen the "
                "grids. Nothing was trained."
            )
        records = list(evaluated.values())
        self.reused_candidates = sum(r.architecture in at_start for r in records)
        for k, rec in evaluated.items():  # costs come from this run's space (closed form or this run's latency model)
            rec.params, rec.inference_cost = float(params[kept[k]]), float(cost[kept[k]])
            if (timing := self.timings.get(rec.architecture)) is not None:  # measured before training: not again
                rec.latency_ms, rec.speedup, rec.timing = (
                    next(iter(timing["latency_ms"].values())),
                    timing["speedup"],
                    timing,
                )
        certificate = bounds.certificate(
            {k: r.error for k, r in evaluated.items()}, self.args.epsilon, frozenset(excluded)
        )
        guarantee = {
            "assumption": MONOTONE_ASSUMPTION,
            "epsilon": self.args.epsilon,
            "space": len(self.space),
            "feasible": len(feasible),
            "kept": len(kept),
            "measured_infeasible": len(excluded),
            **({"latency_calibration": self.latency_calibration} if self.latency_calibration else {}),
            "evaluated": len(records),
            **certificate,
        }
        if certificate["open"]:
            logger.warning(
                f"OSE: max_candidates={self.args.max_candidates} stopped the search with {certificate['open']} kept "
                f"candidate(s) neither evaluated nor ruled out; the best W is within "
                + ("no finite factor" if certificate["factor"] is None else f"a factor {certificate['factor']:.3f}")
                + f" of the optimum (1 + ε = {1 + self.args.epsilon:.3f} without the cap)."
            )
        records = sorted(records, key=lambda r: (r.params, r.inference_cost, r.architecture))
        return self._result(records, params, cost, float(np.mean(targets.train_reference)), guarantee)

    def _latency_protocol(self) -> dict:
        return {
            "batch_size": self.args.latency_batch_size,
            "seq_len": self.args.latency_seq_len or self.args.seq_len,
            "threads": self.args.latency_threads,
            "repeats": self.args.latency_repeats,
        }

    def _feasible(self, params: np.ndarray, cost: np.ndarray, state) -> np.ndarray:
        """Indices of the candidates that can meet `OSEConfig.constraints()`, decided before anything is trained: none
        of them depends on the weights. Parameters and FLOPs are exact; latency and speed-up are predicted by a
        `LatencyModel` fitted on this device with the constraints' protocol (the parent measured with it), and checked
        by measurement again when the best point is chosen. Where no candidate can meet them, the closest is named
        (measured, for latency) and the search refuses to start."""
        limits = self.args.constraints()
        if not limits:
            return np.arange(len(self.space))
        flops = inference_flops(self.space, self.args.seq_len)
        ratios = [params / limits.get("max_params", math.inf), flops / limits.get("max_flops", math.inf)]
        parent_ms = latency = None
        if {"max_latency_ms", "min_speedup"} & set(limits):
            latency, speedup, parent_ms = self._predicted_speed(state)
            ratios += [latency / limits.get("max_latency_ms", math.inf), limits.get("min_speedup", 0.0) / speedup]
        violation = np.max(np.stack(ratios), axis=0)
        if (violation <= 1.0).any():
            return np.flatnonzero(violation <= 1.0)
        closest = int(np.argmin(violation))
        arch, measured = self.space[closest], ""
        if latency is not None:
            model = AutoModel.from_config(self.space.to_config(arch))
            measured_ms = measure_latency_ms(model, **self._latency_protocol())
            ratios = [r[closest] for r in ratios[:2]]
            ratios += [
                measured_ms / limits.get("max_latency_ms", math.inf),
                limits.get("min_speedup", 0.0) * measured_ms / parent_ms,
            ]
            if max(ratios) <= 1.0:  # the prediction was too pessimistic: the measured candidate meets them
                return np.array([closest])
            measured = (
                f", measured {measured_ms:.2f} ms ({parent_ms / measured_ms:.2f}x the parent's {parent_ms:.2f} ms)"
            )
        raise ValueError(
            f"No candidate can meet the constraints {limits}: the closest is {arch} with {params[closest]:,.0f} "
            f"parameters, {flops[closest]:.4g} FLOPs{measured}; relax the constraints or widen the grids. Nothing "
            "was trained."
        )

    def _predicted_speed(self, state) -> tuple[np.ndarray, np.ndarray, float]:
        """(latency ms, speed-up over the parent) predicted for every candidate, and the parent's latency ms.

        A `LatencyModel` fitted on this device with the constraints' protocol predicts each latency, every sample
        timed alternately with the parent (so the machine's drift during the fit skews none of them). The fit times
        uniform candidates at one batch size, while `_measured_to_fail` times a candidate as it is built (uneven
        layers) at every batch size: on MRPC >=3x the fit's speed-ups sat 9% above those measurements at the limit,
        so half of what it let through was then measured too slow, and the candidates only those covered were never
        tried (`benchmarks/results/search_timing/`). So the `latency_calibration_probes` candidates predicted nearest
        a limit are timed as that check times them, and every prediction is scaled by their median measured/predicted
        ratio.

        Even so, a fresh fit moves the predictions by about 1%, and the epsilon-cover, a greedy net, then keeps other
        candidates near the limit, which is where a search under a budget trains: so the prediction is saved (in
        `latency_cache_dir`, default output_dir/latency) and a search that finds its own reuses it."""
        from accelerate.utils import broadcast_object_list

        protocol = self._latency_protocol()
        key = self._latency_key(protocol)
        folder = self.args.latency_cache_dir or (self.output_dir / "latency" if self.output_dir else None)
        found, fresh = [None], False
        if state.is_main_process:  # one process times (parallel timings would slow each other down)
            entry = read_latency_entry(folder, key) if folder else None
            if entry is None:
                fresh = True
                model = LatencyModel.fit(
                    self.space,
                    n_samples=self.args.latency_fit_samples,
                    seq_len=protocol["seq_len"],
                    batch_size=protocol["batch_size"],
                    threads=protocol["threads"],
                    repeats=protocol["repeats"],
                    seed=self.args.seed,
                    reference=self.parent.base_model,
                )
                latency = model.predict(self.space).tolist()
                entry = {"reference_ms": model.reference_ms, "latency": latency, "calibration": None}
            found = [entry]
        if state.num_processes > 1:
            broadcast_object_list(found)
        entry = found[0]
        parent_ms, latency = entry["reference_ms"], np.asarray(entry["latency"])
        speedup = parent_ms / latency
        if self.args.latency_calibration_probes and entry["calibration"] is None:
            entry["calibration"] = self._calibration(latency, speedup)
        if folder and fresh:  # only the main process made it
            write_latency_entry(folder, key, entry)
        self.latency_calibration = entry["calibration"]
        if not self.latency_calibration:
            return latency, speedup, parent_ms
        factors = self.latency_calibration
        return latency * factors["latency_factor"], speedup * factors["speedup_factor"], parent_ms

    def _latency_key(self, protocol: dict) -> dict:
        """Everything a latency prediction depends on: the candidates (the space's grid and the parent's shape), how
        they are timed and against which limits, and the machine and torch that timed them."""
        limits = self.args.constraints()
        return {
            "space": fingerprint_space(self.space),
            "parent": self.space.parent_architecture.as_dict(),
            "protocol": protocol,
            "batch_sizes": self.args.latency_batch_sizes,
            "limits": {k: limits[k] for k in ("max_latency_ms", "min_speedup") if k in limits},
            "fit_samples": self.args.latency_fit_samples,
            "calibration_probes": self.args.latency_calibration_probes,
            "seed": self.args.seed,
            "machine": [platform.machine(), platform.processor(), os.cpu_count(), torch.__version__],
        }

    def _calibration(self, latency: np.ndarray, speedup: np.ndarray) -> dict:
        """The probes nearest a limit timed as `_measured_to_fail` times them, and their median measured/predicted
        ratios (`_predicted_speed`)."""
        limits = self.args.constraints()
        gaps = [np.abs(np.log(latency / limits["max_latency_ms"]))] if "max_latency_ms" in limits else []
        gaps += [np.abs(np.log(speedup / limits["min_speedup"]))] if "min_speedup" in limits else []
        probes = np.argsort(np.min(gaps, axis=0), kind="stable")[: self.args.latency_calibration_probes]
        timings, _ = self._time_candidates(
            self._as_built(probes), sizes=self.args.latency_batch_sizes, stop_early=False
        )
        return {
            "probes": [self.space[i].as_dict() for i in probes],
            "latency_factor": float(np.median([ms / latency[i] for i, (ms, _) in zip(probes, timings)])),
            "speedup_factor": float(np.median([x / speedup[i] for i, (_, x) in zip(probes, timings)])),
        }

    def _measured_to_fail(self, indices: list[int], finished) -> list[bool]:
        """Per candidate about to be trained: whether it misses a latency or speed-up constraint as measured now (the
        constraints' protocol, timed alternately with the parent). The prediction that cut the space errs by several
        percent on shapes unlike its fit's (deep and narrow ones run slower than predicted), and a search under a budget
        evaluates exactly the candidates at its edge; a candidate that misses costs a timing, not a training run, nor
        a place under `max_candidates`. Candidates a journal already holds are not timed again."""
        limits = self.args.constraints()
        if not {"max_latency_ms", "min_speedup"} & set(limits):
            return [False] * len(indices)
        todo = [position for position, index in enumerate(indices) if self.space[index] not in finished]
        candidates = self._as_built([indices[position] for position in todo])
        timings, _ = self._time_candidates(candidates, sizes=self.args.latency_batch_sizes)
        fails = [False] * len(indices)
        for position, (latency, speedup) in zip(todo, timings):
            fails[position] = latency > limits.get("max_latency_ms", math.inf) or speedup < limits.get(
                "min_speedup", 0.0
            )
        return fails

    def _as_built(self, indices) -> list[tuple[Architecture, dict]]:
        """(architecture, per-layer allocation) of each space index: what a candidate is timed as, since uneven layers
        run a few percent slower than even ones of the same totals (MiniLM, 6 layers of 4 heads and FFN 320:
        3.44x/3.84x even, 3.35x/3.57x as allocated)."""
        scores = self.importance()
        return [
            (self.space[i], layer_allocation(self.parent, self.space[i], self.space.allocation, scores))
            for i in indices
        ]

    def _time_candidates(
        self, candidates: list[tuple[Architecture, dict | None]], accept=None, sizes=None, stop_early: bool = True
    ):
        """([(latency ms, speed-up over the parent) per candidate], the parent's latency ms): each (architecture,
        allocation) built from its config and timed by the latency protocol against the parent, on the main process
        only (parallel timings would slow each other down), every rank getting the numbers. Without `accept` the
        candidates are timed together, the parent once for all of them (`measure_speedups`); `accept(position,
        timing)` times them one by one and stops at the first it accepts (those after it stay None).

        With several batch `sizes` the speed-up is the smallest ratio over them (the latency is the first size's);
        a batch of b rows is timed max(5, repeats / b) times (its calls are b times longer), and a candidate already
        short of min_speedup at one size is not timed at the next (unless `stop_early` is False)."""
        from accelerate.utils import broadcast_object_list

        state = ose_state()
        found = [([None] * len(candidates), None, {})]
        if state.is_main_process:
            protocol = self._latency_protocol()
            sizes = sizes or [protocol["batch_size"]]
            enough = (self.args.min_speedup or 0.0) if stop_early else 0.0
            timings, parent_ms, measured = [None] * len(candidates), None, {}
            together = max(1, len(candidates)) if accept is None else 1
            for start in range(0, len(candidates), together):
                group = candidates[start : start + together]
                models = [AutoModel.from_config(self.space.to_config(arch, allocation)) for arch, allocation in group]
                speeds, timing = [[] for _ in group], list(range(len(group)))
                for size in sizes:
                    if not timing:  # every candidate of the group already too slow
                        break
                    repeats = (
                        protocol["repeats"] if size == sizes[0] else max(5, math.ceil(protocol["repeats"] / size))
                    )
                    shape = (size, protocol["seq_len"])
                    timed = measure_speedups(
                        [models[k] for k in timing], self.parent.base_model, shape, protocol["threads"], repeats
                    )
                    for k, speed in zip(timing, timed):
                        speeds[k].append(speed)
                    timing = [k for k in timing if speeds[k][-1].value >= enough]
                parent_ms = next(iter(speeds[0][0].reference_ms.values()))
                for k, (arch, _) in enumerate(group):
                    speed = Speedup.combine(speeds[k])
                    timings[start + k] = (next(iter(speed.latency_ms.values())), speed.value)
                    measured[arch] = speed.to_dict()
                    measured[arch]["protocol"]["when"] = "before training, by the search"
                if accept is not None and accept(start, timings[start]):
                    break
            found = [(timings, parent_ms, measured)]
        if state.num_processes > 1:
            broadcast_object_list(found)
        timings, parent_ms, measured = found[0]
        self.timings.update(measured)
        return timings, parent_ms

    def _dims(self) -> np.ndarray:
        """Every candidate's dimensions as columns (depth, heads, hidden, intermediate, head width): containment is
        "≥ in every column"."""
        arrays = self.space.arrays()
        return np.stack([arrays[d] for d in ("depth", "heads", "hidden", "intermediate", "head_dim")], axis=1)

    def _evaluate_round(self, indices: list[int], params, cost, targets, scores, finished) -> list[CandidateRecord]:
        """The records of `indices` (space indices), the same on every process: read from the journal where a search
        finished them, else evaluated, shared out over the processes (and with other searches into the folder)."""
        from accelerate.utils import gather_object

        state = ose_state()
        new = []
        for index in indices[state.process_index :: state.num_processes]:
            if self.space[index] in finished:
                continue
            record = self._claim_and_evaluate(index, params, cost, targets, scores, state.process_index)
            if record is not None:  # None: another search into the same folder has it, or finished it
                new.append(record.to_dict())
        if self.output_dir is None:
            for values in gather_object(new) if state.num_processes > 1 else new:
                record = CandidateRecord.from_dict(values)
                finished[record.architecture] = record
        else:
            # Candidates claimed by another search are waited for, stale claims taken over, and every candidate of the
            # round is then read back from the journal.
            self._finish_claimed(indices, params, cost, targets, scores, state.process_index)
            state.wait_for_everyone()
            finished.update(self.journal.read()[0])
        return [finished[self.space[index]] for index in indices]

    def extract(self, arch: Architecture, as_bort: bool = False) -> PreTrainedModel:
        """The student of `arch` exactly as the search built it before its short run: the parent's most important
        weights by the search's scores, its allocation over layers (the per-layer sizes its record holds), its seed;
        `as_bort` makes it a Bort model even where the parent's class could hold it."""
        return extract_subnetwork(
            self.parent,
            arch,
            as_bort,
            importance=self.importance(),
            allocation=self.space.allocation,
            seed=_candidate_seed(arch, self.args.seed),
        )

    def _result(self, records: list[CandidateRecord], params, cost, reference: float, guarantee: dict) -> OSEResult:
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
        best, constraints = self._best_under_constraints(records)
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
            constraints=constraints,
            guarantee=guarantee,
            allocation=self.space.allocation,
        )

    # ----- step 3: error estimates -----

    def estimate(self, architectures: Sequence[Architecture], steps: int | None = None) -> list[CandidateRecord]:
        """Step 3 alone: the error estimate of each of `architectures` (any members of the space's grid or not).

        The same numbers `run()` records for them, without buckets, resume files or processes: for benchmarks that
        check what ê predicts, and for re-scoring a handful of candidates under other settings (`steps`: short runs
        of that many steps instead of the search's own).
        """
        if steps is not None:
            with self._steps(steps):
                return self.estimate(architectures)
        chosen = SearchSpace.from_architectures(self.space, list(architectures))
        params = parameter_count(chosen)
        if self.args.inference_cost == "flops":
            cost = inference_flops(chosen, self.args.seq_len)
        else:
            if self.latency_model is None:
                self._costs()
            cost = self.latency_model.predict(chosen)
        targets = self._prepare_targets()
        scores = self.importance()
        return [
            self._evaluate(arch, float(p), float(c), targets, scores)
            for arch, p, c in zip(architectures, params, cost)
        ]

    def estimate_model(self, model: PreTrainedModel, arch: Architecture, steps: int | None = None) -> float:
        """ê of a model already of shape `arch` that was not cut from the parent as it is (gradual compression's
        student, cut from a trained halfway model): the short runs `estimate` makes for `arch`, with its seed, from
        `model`'s weights. `model` is not modified."""
        if steps is not None:
            with self._steps(steps):
                return self.estimate_model(model, arch)
        return self._short_runs(model, arch, self._prepare_targets(), _candidate_seed(arch, self.args.seed))[0]

    @contextlib.contextmanager
    def _steps(self, steps: int):
        """Short runs of `steps` steps instead of the search's own, for the calls inside."""
        if steps < self.args.interval:
            raise ValueError(f"steps={steps} is shorter than the averaging window (interval={self.args.interval}).")
        searched, self.steps = self.steps, steps
        try:
            yield
        finally:
            self.steps = searched

    def importance(self, model: PreTrainedModel | None = None) -> ImportanceScores:
        """Importance scores by `args.importance` on the search's few fitting batches: the parent's (computed once,
        what extraction ranks by), or `model`'s (e.g. a trained halfway model, for gradual compression)."""
        if model is None and getattr(self, "_scores", None) is not None:
            return self._scores
        batches = None if self.args.importance == "magnitude" else self._importance_batches()
        scores = compute_importance(model if model is not None else self.parent, batches, method=self.args.importance)
        if model is None:
            self._scores = scores
        return scores

    def _importance_batches(self) -> list[dict[str, torch.Tensor]]:
        """The few fitting batches importance is scored on; with labels, a model's own task loss ranks its weights."""
        fit, _ = self._split()
        return [
            {k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "labels")}
            for b in self._batches(fit, 4, self.args.seed)
        ]

    def _split(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(fit rows, held-out rows): `eval_dataset` when given, else a seeded `holdout_fraction` of the training rows.

        The held-out rows are never trained on nor used to fit a projection or head, so the ê they give measures
        how the candidate generalises, not how well its fitted parts memorise (which favours wide models).
        """
        if self._eval is not None:
            return self._train, self._eval
        rows = len(self._train["input_ids"])
        if rows < 2:
            raise ValueError(
                "The error estimate needs held-out rows: pass at least 2 training texts, or an eval_dataset."
            )
        held = min(rows - 1, max(1, round(self.args.holdout_fraction * rows)))
        order = torch.randperm(rows, generator=torch.Generator().manual_seed(self.args.seed))
        fit_index, held_index = torch.sort(order[held:]).values, torch.sort(order[:held]).values
        return (
            {k: v[fit_index] for k, v in self._train.items()},
            {k: v[held_index] for k, v in self._train.items()},
        )

    def _batches(self, data: dict[str, torch.Tensor], n_batches: int, seed: int | None = None) -> list[dict]:
        """`n_batches` batches of `batch_size` rows; every candidate sees exactly the same data.

        With a seed, the rows are cycled through in a fresh seeded order each pass, so a long budget uses all of
        them (not the first `n_batches * batch_size`); without one, in order (for scoring every held-out row once).
        """
        rows, size = len(data["input_ids"]), self.args.batch_size
        if seed is None:
            index = torch.arange(n_batches * size) % rows
        else:
            generator = torch.Generator().manual_seed(seed)
            passes = math.ceil(n_batches * size / rows)
            index = torch.cat([torch.randperm(rows, generator=generator) for _ in range(passes)])
        return [
            {k: v[index[b * size : (b + 1) * size]].to(self.device) for k, v in data.items()} for b in range(n_batches)
        ]

    @torch.no_grad()
    def _prepare_targets(self) -> Targets:
        """Fitting and held-out batches with the objective's targets and per-batch references.

        A batch's reference is the loss, on that batch, of the best input-independent prediction fitted on the
        fitting rows (the teacher's mean hidden state, the label prior, the parent's mean label distribution, ...).
        Dividing by it makes ê = 1 - R²-like and batches comparable, and on held-out rows the candidate and the
        reference are fitted on the same data, so neither is favoured.
        """
        fit, held = self._split()
        train = self._batches(fit, self.steps, self.args.seed)
        # Held-out rows are only read forward, in batches of at least EVAL_BATCH_SIZE rows: each is scored once.
        size = max(self.args.batch_size, EVAL_BATCH_SIZE)
        heldout = [
            {k: v[i : i + size].to(self.device) for k, v in held.items()}
            for i in range(0, len(held["input_ids"]), size)
        ]
        return self.objective.prepare(train, heldout, fit)

    def _evaluate(self, arch, params, cost, targets: Targets, scores) -> CandidateRecord:
        """ê of one candidate: a short run under each setting of Θ, scored on the held-out rows; the best counts."""
        seed = _candidate_seed(arch, self.args.seed)
        torch.manual_seed(seed)
        start = time.perf_counter()
        extracted = extract_subnetwork(
            self.parent, arch, importance=scores, seed=seed, allocation=self.space.allocation
        )
        allocation = layer_sizes(extracted.config)
        held_out, in_sample, raw_loss, setting = self._short_runs(extracted, arch, targets, seed)
        return CandidateRecord(
            architecture=arch,
            params=params,
            inference_cost=cost,
            error=held_out,
            raw_loss=raw_loss,
            steps=self.steps,
            seconds=time.perf_counter() - start,
            seed=seed,
            eval_error=held_out,
            in_sample_error=in_sample,
            setting=dict(setting),
            allocation=allocation,
        )

    def _short_runs(self, model, arch, targets: Targets, seed: int) -> tuple[float, float, float, dict]:
        """One short run of a copy of `model` under each setting of Θ: the best (held-out ê, in-sample ê, raw loss,
        setting)."""
        model = model if self.objective.keeps_head else model.base_model
        runs = []
        for setting in self.args.hyperparameter_space:
            torch.manual_seed(seed)
            runs.append((*self._short_run(copy.deepcopy(model), arch, targets, setting), setting))
        return min(runs, key=lambda run: run[0])

    def _short_run(self, student, arch, targets: Targets, setting: dict) -> tuple[float, float, float]:
        """Train `student` for `steps` steps under one setting of Θ: (held-out ê, in-sample ê, raw in-sample loss).

        The in-sample ê is the loss averaged over the last `interval` steps relative to the reference; the held-out
        ê is the same ratio on the held-out rows after training, through the same (fixed) projection or head.
        """
        student.eval()  # no dropout: a short estimate measures capacity, and stays deterministic
        head = self.objective.head(student, targets, arch)
        # The word embeddings (most of a small encoder's weights) stay as extracted: updating them densely would
        # dominate every step, and a short run measures what the architecture's layers can do with them.
        student.get_input_embeddings().weight.requires_grad_(False)
        weight_decay = setting.get("weight_decay", 0.0)
        groups = [{"params": [p for p in student.parameters() if p.requires_grad]}]
        head_learning_rate = self.objective.head_learning_rate(setting)
        if head_learning_rate is not None:  # a fresh head ("task") trains at its own rate
            groups.append({"params": list(head.parameters()), "lr": head_learning_rate})
        optimizer = torch.optim.AdamW(groups, lr=setting["learning_rate"], weight_decay=weight_decay)
        losses = []
        for batch, target in zip(targets.train, targets.train_hidden):
            loss = self.objective.loss(student, head, batch, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach().item())
        last = slice(len(losses) - self.args.interval, None)
        in_sample = float(np.mean(np.array(losses[last]) / np.array(targets.train_reference[last])))
        with torch.no_grad():
            ratios = [
                float(self.objective.loss(student, head, b, t)) / r
                for b, t, r in zip(targets.eval, targets.eval_hidden, targets.eval_reference)
            ]
        held_out = float(np.mean(ratios))
        if not math.isfinite(held_out):
            held_out = math.inf  # a diverged setting never wins Θ
        return held_out, in_sample, float(np.mean(losses[last]))

    # ----- the journal (hf_bort/ose/journal.py) -----

    def _load_finished(self, state) -> dict[Architecture, CandidateRecord]:
        return {} if self.journal is None else self.journal.open(self.settings(), state)

    def _check_seq_len(self) -> None:
        """seq_len must fit the parent's position table (RoBERTa-style embeddings start after the padding index)."""
        table = getattr(self.parent.config, "max_position_embeddings", None)
        if table is None:
            return
        offset = self.space.shape.position_offset  # the family row says where positions start
        if self.args.seq_len > table - offset:
            raise ValueError(
                f"seq_len {self.args.seq_len} exceeds the parent's position table ({table - offset} positions); "
                f"pass seq_len={table - offset} or less."
            )

    def _claim_and_evaluate(self, index, params, cost, targets, scores, rank: int) -> CandidateRecord | None:
        """Evaluate candidate `index` unless another process holds it or it is journaled; None when skipped."""
        arch = self.space[index]
        if self.journal is None:
            return self._evaluate(arch, float(params[index]), float(cost[index]), targets, scores)
        try:  # the claim is taken inside: an interrupt landing anywhere from here on still releases it
            if not self.journal.claim(arch):
                return None
            record = self._evaluate(arch, float(params[index]), float(cost[index]), targets, scores)
            self.journal.append(record, rank)
        finally:
            self.journal.release(arch)
        return record

    def _finish_claimed(self, indices, params, cost, targets, scores, rank: int) -> None:
        """Until every candidate of `indices` is journaled: take over unclaimed or stale ones, wait for live claims."""
        by_arch = {self.space[int(k)]: int(k) for k in indices}
        self.journal.wait_for(
            by_arch, lambda arch: self._claim_and_evaluate(by_arch[arch], params, cost, targets, scores, rank)
        )

    def _best_under_constraints(self, records: list[CandidateRecord]) -> tuple[Architecture, dict]:
        """The lowest-W record that meets `OSEConfig.constraints()`, and what was applied (with measurements).

        Parameters and FLOPs are exact. Latency is measured on this device with `measure_latency_ms` (the parent
        itself, and each candidate built from its config) in W order until one meets the constraints, so a search
        measures only what it needs; every measured candidate carries `latency_ms` and `speedup`.
        """
        ranked = sorted(records, key=lambda r: (r.w, r.error, r.params))
        limits = self.args.constraints()
        if not limits:
            return ranked[0].architecture, {}
        flops = dict(
            zip(
                (r.architecture for r in records),
                inference_flops(
                    SearchSpace.from_architectures(self.space, [r.architecture for r in records]), self.args.seq_len
                ),
            )
        )
        applied: dict = {"limits": limits}

        def violation(rec: CandidateRecord) -> float:
            """The largest ratio of a measure to its limit (> 1: violated); unmeasured latency counts as unknown."""
            ratios = [
                rec.params / limits.get("max_params", math.inf),
                flops[rec.architecture] / limits.get("max_flops", math.inf),
            ]
            if rec.latency_ms is not None:
                ratios.append(rec.latency_ms / limits.get("max_latency_ms", math.inf))
                ratios.append(limits.get("min_speedup", 0.0) / rec.speedup)
            return max(ratios)

        static = [r for r in ranked if violation(r) <= 1.0]
        if static and static[0].timing is not None:  # measured before it was trained (`_measured_to_fail`)
            first = next(iter(static[0].timing["reference_ms"].values()))
            applied.update(parent_latency_ms=first, latency_protocol=self._latency_protocol())
            return static[0].architecture, applied
        if {"max_latency_ms", "min_speedup"} & set(limits) and static:
            # in W order until one meets the constraints: a search times only what it needs

            def accept(position: int, timing: tuple[float, float]) -> bool:
                static[position].latency_ms, static[position].speedup = timing
                return violation(static[position]) <= 1.0

            timings, parent_ms = self._time_candidates(
                [(r.architecture, r.allocation) for r in static], accept, sizes=self.args.latency_batch_sizes
            )
            applied.update(parent_latency_ms=parent_ms, latency_protocol=self._latency_protocol())
            for rec, timing in zip(static, timings):
                if timing is not None:
                    rec.latency_ms, rec.speedup = timing
                    if violation(rec) <= 1.0:
                        return rec.architecture, applied
            static = []
        if static:
            return static[0].architecture, applied
        closest = min(records, key=violation)
        measured = (
            f", {closest.latency_ms:.2f} ms ({closest.speedup:.2f}x the parent's {applied['parent_latency_ms']:.2f} ms)"
            if closest.latency_ms is not None
            else ""
        )
        raise ValueError(
            f"No evaluated candidate meets the constraints {limits}: the closest is {closest.architecture} with "
            f"{closest.params:,.0f} parameters, {flops[closest.architecture]:.4g} FLOPs{measured}; relax the "
            "constraints, or search more candidates (a smaller epsilon, a finer grid, or no max_candidates)."
        )


def find_text_columns(columns: list[str], text_column, name: str) -> tuple[str, str | None]:
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


__all__ = ["MONOTONE_ASSUMPTION", "OSESearch", "epsilon_cover", "ose_state", "read_text_lines", "w_coefficient"]
