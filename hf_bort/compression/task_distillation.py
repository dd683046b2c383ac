"""Recovery after extraction: task distillation from the fine-tuned parent, with layer-wise hidden-state matching.

The loss of `TaskDistillationTrainer` is CoFi's (Xia et al., 2022) without its masks:

    kd_alpha · task loss + (1 - kd_alpha) · T² · KL(parent / T || student / T) + layer_weight · Σ_l MSE_l / |l|

For regression the second term is the MSE between the two models' outputs. The layer term matches every student
hidden state to the parent's hidden state it was extracted from (`config.parent_layers`, written by extraction;
otherwise `hf_bort.distill.layer_map`'s uniform matching), through a fixed closed-form map where the widths differ,
each normalised by the parent state's variance so that layers weigh alike.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer

from ..distill import layer_map
from ..ose.objectives import ridge_map


def matched_layers(student: PreTrainedModel, teacher: PreTrainedModel) -> list[int]:
    """For every student hidden state (embeddings first), the parent hidden state it is matched with."""
    parent_layers = getattr(student.config, "parent_layers", None)
    if parent_layers is not None and len(parent_layers) == student.config.num_hidden_layers:
        return [0, *(layer + 1 for layer in parent_layers)]
    return layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)


def layer_matching_loss(student_states, teacher_states, mapping: list[int], mask: torch.Tensor, maps=None):
    """CoFi's layer term: over the student's hidden states, the mean of each one's MSE (on the real tokens of `mask`,
    through `maps[k]` where the widths differ) to the teacher state `mapping[k]`, divided by that teacher state's
    variance so that layers weigh alike."""
    terms = []
    for k, t in enumerate(mapping):
        target = teacher_states[t][mask].float()
        state = student_states[k][mask].float()
        error = (state if maps is None else maps[k](state)) - target
        terms.append(error.pow(2).mean() / target.var().clamp_min(1e-6))
    return torch.stack(terms).mean()


class TaskDistillationTrainer(Trainer):
    """A `Trainer` whose loss distils a fine-tuned `teacher` (see the module docstring) through the public
    `compute_loss` hook; the teacher stays frozen, in eval mode, on the student's device."""

    def __init__(
        self,
        *args,
        teacher: PreTrainedModel,
        kd_alpha: float = 0.5,
        kd_temperature: float = 2.0,
        layer_weight: float = 1.0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False)
        self.kd_alpha, self.kd_temperature, self.layer_weight = kd_alpha, kd_temperature, layer_weight
        self.mapping = matched_layers(self.model, teacher)
        self.maps: nn.ModuleList | None = None  # fitted on the first batch, where the widths differ

    def _fit_maps(self, student_states, teacher_states, mask) -> nn.ModuleList:
        maps = []
        for k, t in enumerate(self.mapping):
            x, y = student_states[k][mask].float(), teacher_states[t][mask].float()
            maps.append(nn.Identity() if x.shape[-1] == y.shape[-1] else ridge_map(x, y))
        return nn.ModuleList(maps)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        hidden = self.layer_weight > 0
        outputs = model(**inputs, output_hidden_states=hidden)
        with torch.no_grad():
            self.teacher.to(outputs.logits.device)
            teacher = self.teacher(**inputs, output_hidden_states=hidden)
        logits, teacher_logits = outputs.logits.float(), teacher.logits.float()
        if logits.shape[-1] == 1:  # regression
            task = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            kd = nn.functional.mse_loss(logits, teacher_logits)
        else:
            task = nn.functional.cross_entropy(logits, labels)
            t = self.kd_temperature
            kd = nn.functional.kl_div(
                torch.log_softmax(logits / t, -1), torch.log_softmax(teacher_logits / t, -1), reduction="batchmean",
                log_target=True,
            ) * t**2  # fmt: skip
        loss = self.kd_alpha * task + (1 - self.kd_alpha) * kd
        if hidden:
            mask = inputs["attention_mask"].bool()
            if self.maps is None:
                self.maps = self._fit_maps(outputs.hidden_states, teacher.hidden_states, mask).to(logits.device)
            layers = layer_matching_loss(outputs.hidden_states, teacher.hidden_states, self.mapping, mask, self.maps)
            loss = loss + self.layer_weight * layers
        inputs["labels"] = labels
        return (loss, outputs) if return_outputs else loss


__all__ = ["TaskDistillationTrainer", "layer_matching_loss", "matched_layers"]
