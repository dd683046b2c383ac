"""What a candidate's short run minimises and how its held-out error ê is read: OSE's objectives, by name.

Each objective is one class in `OBJECTIVES` (as transformers' `LOSS_MAPPING` names its losses), so the search itself
never asks which one it runs. An objective prepares, once per search, the fixed targets every candidate is trained
and scored on (`prepare`), gives a candidate its head or projection (`head`), and computes one batch's loss
(`loss`). Every batch's loss is divided by that of the best input-independent prediction on it (its reference), so
ê reads like 1 - R² and stays comparable across batches and candidates.

* "distill": MSE between the candidate's final hidden states, through the best affine map to the parent's width
  (ridge least squares, closed form), and the parent's, on unlabelled text;
* "distill_layers": the same for every student layer matched to a parent layer as `hf_bort.distill.layer_map`
  matches them (embeddings included), each through its own closed-form map and normalised by its own variance;
* "task": cross-entropy (or MSE for float labels) of a fresh linear head on the first token;
* "task_distill": a fine-tuned classifier's own task, distilled: KL(parent || candidate) between their predicted
  label distributions (MSE between their outputs for regression), the candidate keeping the parent's classifier as
  extraction carries it over; labels, when the rows have them, serve the importance of the parent's weights;
* "lm" (causal LMs): KL(parent || candidate) between the next-token distributions at temperature 1, the candidate
  keeping its own (extracted) LM head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, PreTrainedModel

from ..distill import layer_map
from .ose_config import OBJECTIVES as OBJECTIVE_NAMES


if TYPE_CHECKING:
    from .search import OSESearch
    from .space import Architecture


@dataclass
class Targets:
    """The fixed data every candidate is trained and scored on, with the teacher's outputs and reference errors.

    `train` holds the fitting batches (the short run's steps); `projection` fitting batches (as many as
    `HEAD_FIT_BATCHES`, whatever the step budget) for the closed-form maps; `eval` the held-out batches, which no
    candidate's training, projection or head ever sees.
    """

    train: list[dict[str, torch.Tensor]]
    train_hidden: list
    train_reference: list[float]
    eval: list[dict[str, torch.Tensor]]
    eval_hidden: list
    eval_reference: list[float]
    projection: list[dict[str, torch.Tensor]] = field(default_factory=list)  # fitting rows for the maps
    projection_hidden: list = field(default_factory=list)


# The parent's mean prediction (the reference of "task_distill") is read from up to this many fitting rows.
MEAN_ROWS = 512
# The ridge projections are fitted on up to this many batches of fitting rows: a d x d map needs many more tokens
# than d (fitted on a short run's few batches it memorises them and its held-out error passes 1), at a fixed cost
# whatever the step budget.
HEAD_FIT_BATCHES = 32


def ridge_map(x: torch.Tensor, y: torch.Tensor) -> nn.Linear:
    """The affine map x -> y of least squared error, lightly ridge-regularised (closed form), frozen."""
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    ridge = 1e-2 * xc.pow(2).sum() / x.shape[1] + 1e-8
    eye = torch.eye(x.shape[1], device=x.device, dtype=x.dtype)
    solution = torch.linalg.solve(xc.T @ xc + ridge * eye, xc.T @ (y - y_mean))
    head = nn.Linear(x.shape[1], y.shape[1]).to(device=x.device, dtype=x.dtype)
    head.weight.data.copy_(solution.T)
    head.bias.data.copy_(y_mean - x_mean @ solution)
    return head.requires_grad_(False)


class LayerMaps(nn.Module):
    """One fixed ridge map per student hidden state, each to the teacher state `mapping` matches it with."""

    def __init__(self, maps: list[nn.Linear], mapping: list[int]):
        super().__init__()
        self.maps = nn.ModuleList(maps)
        self.mapping = mapping


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


class Objective:
    """One objective of the search (see the module docstring); `search` gives the parent, the settings and the
    device."""

    name: ClassVar[str]
    parent_class: ClassVar[type] = AutoModel  # how a parent given as a path is loaded
    needs_labels: ClassVar[bool] = False  # the rows must have the label column
    uses_labels: ClassVar[bool] = False  # labels, where the rows have them, enter the batches (and the importance)
    keeps_head: ClassVar[bool] = False  # the candidate trains with the head extraction carried over

    def __init__(self, search: OSESearch):
        self.search = search
        self.args = search.args

    def check_parent(self, parent: PreTrainedModel) -> None:
        """Refuse a parent this objective cannot learn from, naming the fix."""

    def prepare(self, train: list[dict], heldout: list[dict], fit: dict[str, torch.Tensor]) -> Targets:
        raise NotImplementedError

    def head(self, student: nn.Module, targets: Targets, arch: Architecture) -> nn.Module:
        return nn.Identity()

    def head_learning_rate(self, setting: dict) -> float | None:
        """The fresh head's own learning rate, or None when there is no fresh head to train."""
        return None

    def loss(self, student: nn.Module, head: nn.Module, batch: dict, target) -> torch.Tensor:
        raise NotImplementedError


class DistillHidden(Objective):
    """The parent's final hidden states on unlabelled text, through a closed-form map (or every matched layer)."""

    name = "distill"
    all_layers = False

    def _states(self, batches: list[dict]) -> list[tuple[torch.Tensor, ...]]:
        """Per batch: the teacher's hidden states (all layers, or the last one), each of shape (rows, len, d)."""
        base = self.search.parent.base_model
        out = []
        for b in batches:
            result = base(**_inputs(b), output_hidden_states=self.all_layers)
            out.append(tuple(result.hidden_states) if self.all_layers else (result.last_hidden_state,))
        return out

    def prepare(self, train, heldout, fit) -> Targets:
        search = self.search
        projection = search._batches(
            fit, min(HEAD_FIT_BATCHES, math.ceil(len(fit["input_ids"]) / self.args.batch_size)), self.args.seed + 1
        )
        projection_states = self._states(projection)
        # The input-independent predictor: each layer's mean state over the fitting tokens.
        means = [
            torch.cat([s[k][b["attention_mask"].bool()] for s, b in zip(projection_states, projection)]).mean(0)
            for k in range(len(projection_states[0]))
        ]

        def targets(batches, batch_states):
            hidden, refs = [], []
            for b, layer_states in zip(batches, batch_states):
                mask = b["attention_mask"].bool()
                references = torch.stack([(h[mask] - m).pow(2).mean() for h, m in zip(layer_states, means)])
                if self.all_layers:
                    hidden.append((layer_states, references))
                    refs.append(1.0)
                else:
                    hidden.append(layer_states[0])
                    refs.append(float(references[0]))
            return hidden, refs

        return Targets(
            train,
            *targets(train, self._states(train)),
            heldout,
            *targets(heldout, self._states(heldout)),
            projection,
            targets(projection, projection_states)[0],
        )

    def head(self, student, targets, arch) -> nn.Module:
        """The best affine map from the candidate's width to the parent's, by ridge least squares over the projection
        batches, then fixed (a closed-form optimum that Adam's noisy steps would only degrade); one map per matched
        layer for "distill_layers" (`hf_bort.distill.layer_map`)."""
        mapping = layer_map(arch.depth, self.search.space.parent_architecture.depth) if self.all_layers else [None]
        xs, ys = [[] for _ in mapping], [[] for _ in mapping]
        with torch.no_grad():
            for batch, target in zip(targets.projection, targets.projection_hidden):
                mask = batch["attention_mask"].bool()
                out = student(**_inputs(batch), output_hidden_states=self.all_layers)
                states = out.hidden_states if self.all_layers else (out.last_hidden_state,)
                teacher = target[0] if self.all_layers else (target,)
                for k, t in enumerate(mapping):
                    xs[k].append(states[k][mask])
                    ys[k].append(teacher[t if self.all_layers else 0][mask])
        maps = [ridge_map(torch.cat(x), torch.cat(y)) for x, y in zip(xs, ys)]
        return maps[0] if not self.all_layers else LayerMaps(maps, mapping)

    def loss(self, student, head, batch, target) -> torch.Tensor:
        mask = batch["attention_mask"].bool()
        if not self.all_layers:
            hidden = student(**_inputs(batch)).last_hidden_state
            return nn.functional.mse_loss(head(hidden[mask]), target[mask])
        out = student(**_inputs(batch), output_hidden_states=True)
        teacher_states, variances = target
        terms = [
            nn.functional.mse_loss(m(out.hidden_states[k][mask]), teacher_states[t][mask]) / variances[t]
            for k, (m, t) in enumerate(zip(head.maps, head.mapping))
        ]
        return torch.stack(terms).mean()


class DistillLayers(DistillHidden):
    name = "distill_layers"
    all_layers = True


class Task(Objective):
    """Labelled rows: a fresh linear head on the first token, trained at its own learning rate."""

    name = "task"
    needs_labels = uses_labels = True

    def prepare(self, train, heldout, fit) -> Targets:
        labels = fit["labels"]
        if labels.is_floating_point():
            reference = float(labels.var(unbiased=False))
        else:
            prior = torch.bincount(labels).float() / len(labels)
            reference = float(-(prior[prior > 0] * prior[prior > 0].log()).sum())
        return Targets(
            train, [None] * len(train), [reference] * len(train), heldout, [None] * len(heldout),
            [reference] * len(heldout),
        )  # fmt: skip

    def head(self, student, targets, arch) -> nn.Module:
        labels = self.search._train["labels"]
        outputs = 1 if labels.is_floating_point() else int(labels.max()) + 1
        return nn.Linear(arch.hidden, outputs).to(self.search.device)

    def head_learning_rate(self, setting: dict) -> float | None:
        return setting["head_learning_rate"]

    def loss(self, student, head, batch, target) -> torch.Tensor:
        logits = head(student(**_inputs(batch)).last_hidden_state[:, 0])
        labels = batch["labels"]
        if labels.is_floating_point():
            return nn.functional.mse_loss(logits.squeeze(-1), labels)
        return nn.functional.cross_entropy(logits, labels)


class TaskDistill(Objective):
    """A fine-tuned classifier's predictions: the candidate, with the classifier extraction carried over, matches
    the parent's label distribution (KL(parent || candidate)), or its output for regression (MSE)."""

    name = "task_distill"
    parent_class = AutoModelForSequenceClassification
    keeps_head = uses_labels = True

    def check_parent(self, parent: PreTrainedModel) -> None:
        if not type(parent).__name__.endswith("ForSequenceClassification"):
            raise ValueError(
                f"objective='task_distill' distils a fine-tuned classifier's predictions, and {type(parent).__name__} "
                "has no sequence-classification head; pass the model fine-tuned on the task (loaded with "
                "AutoModelForSequenceClassification), or use objective='distill' for a pretrained parent."
            )

    @property
    def regression(self) -> bool:
        return self.search.parent.config.num_labels == 1

    def _outputs(self, batches: list[dict]) -> list[torch.Tensor]:
        """The parent's log-probabilities per row (its output, for regression), in float32."""
        out = []
        for b in batches:
            logits = self.search.parent(**_inputs(b)).logits.float()
            out.append(logits.squeeze(-1) if self.regression else torch.log_softmax(logits, -1))
        return out

    def prepare(self, train, heldout, fit) -> Targets:
        # The input-independent predictor, fitted on every fitting row: the parent's mean label distribution (its
        # mean output, for regression); a batch's reference is its loss on that batch.
        rows, device = min(len(fit["input_ids"]), MEAN_ROWS), self.search.device
        chunks = [{k: v[i : min(i + 64, rows)].to(device) for k, v in fit.items()} for i in range(0, rows, 64)]
        everything = self._outputs(chunks)  # up to MEAN_ROWS fitting rows, each once
        if self.regression:
            mean = torch.cat(everything).mean()
            spread = float((torch.cat(everything) - mean).pow(2).mean())
        else:
            mean = torch.cat([o.exp() for o in everything]).mean(0).log()
            spread = float(torch.cat([(o.exp() * (o - mean)).sum(-1) for o in everything]).mean())
        if spread < 1e-3:  # ê would divide by ~0: there is nothing input-dependent to distil
            raise ValueError(
                f"The parent predicts the same {'value' if self.regression else 'label distribution'} for every "
                f"fitting row (spread {spread:.2e} around its mean), so there is nothing to distil: pass the model "
                "fine-tuned on this task, or use objective='distill'."
            )

        def references(outputs: list[torch.Tensor]) -> list[float]:
            if self.regression:
                return [float((o - mean).pow(2).mean()) for o in outputs]
            return [float((o.exp() * (o - mean)).sum(-1).mean()) for o in outputs]

        train_outputs, heldout_outputs = self._outputs(train), self._outputs(heldout)
        return Targets(
            train, train_outputs, references(train_outputs), heldout, heldout_outputs, references(heldout_outputs)
        )

    def loss(self, student, head, batch, target) -> torch.Tensor:
        logits = student(**_inputs(batch)).logits.float()
        if self.regression:
            return nn.functional.mse_loss(logits.squeeze(-1), target)
        return (target.exp() * (target - torch.log_softmax(logits, -1))).sum(-1).mean()


class NextToken(Objective):
    """A causal LM's next-token distributions on unlabelled text, the candidate keeping its extracted LM head."""

    name = "lm"
    parent_class = AutoModelForCausalLM
    keeps_head = True

    def check_parent(self, parent: PreTrainedModel) -> None:
        if not (type(parent).can_generate() and parent.get_output_embeddings() is not None):
            raise ValueError(
                f"objective='lm' distils next-token distributions and needs a causal LM with its head; got "
                f"{type(parent).__name__}. Load it with AutoModelForCausalLM, or use objective='distill'."
            )

    @torch.no_grad()
    def _log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """The parent's next-token log-probabilities from its final hidden states (its LM head; temperature 1)."""
        return torch.log_softmax(self.search.parent.get_output_embeddings()(hidden).float(), dim=-1)

    def prepare(self, train, heldout, fit) -> Targets:
        search = self.search
        base = search.parent.base_model

        def states(batches):
            return [base(**_inputs(b)).last_hidden_state for b in batches]

        projection = search._batches(
            fit, min(HEAD_FIT_BATCHES, math.ceil(len(fit["input_ids"]) / self.args.batch_size)), self.args.seed + 1
        )
        # the input-independent predictor: the parent's mean next-token distribution over the fitting tokens
        probs = sum(
            self._log_probs(s[b["attention_mask"].bool()]).exp().sum(0) for s, b in zip(states(projection), projection)
        )
        log_mean = (probs / probs.sum()).log()

        def targets(batches):
            hidden, refs = [], []
            for b, state in zip(batches, states(batches)):
                log_p = self._log_probs(state[b["attention_mask"].bool()])  # KL(parent || mean) on these tokens
                hidden.append(state)
                refs.append(float((log_p.exp() * (log_p - log_mean)).sum(-1).mean()))
            return hidden, refs

        return Targets(train, *targets(train), heldout, *targets(heldout))

    def loss(self, student, head, batch, target) -> torch.Tensor:
        mask = batch["attention_mask"].bool()
        logits = student(**_inputs(batch)).logits
        log_q = torch.log_softmax(logits[mask].float(), dim=-1)
        log_p = self._log_probs(target[mask])
        return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (DistillHidden, DistillLayers, Task, TaskDistill, NextToken)
}
if tuple(OBJECTIVES) != OBJECTIVE_NAMES:  # OSEConfig lists them without importing torch; the two must agree
    raise ImportError(
        f"OSEConfig's objectives {OBJECTIVE_NAMES} differ from hf_bort.ose.objectives {tuple(OBJECTIVES)}."
    )


__all__ = ["HEAD_FIT_BATCHES", "OBJECTIVES", "LayerMaps", "Objective", "Targets", "ridge_map"]
