"""Kwon et al.'s retraining-free pruning (heads + FFN neurons) of a fine-tuned BERT classifier, in its own venv.

Kwon, Kim, Mahoney, Hassoun, Keutzer, Gholami, "A Fast Post-Training Pruning Framework for Transformers", NeurIPS
2022 (arXiv:2204.09656). Reference code: github.com/WoosukKwon/retraining-free-pruning, commit
806ac5a6ff53b4978e5330d45a3de692493e4d0b (2023-02-27). The three steps, as that code does them with `--metric mac`:

1. Mask search: the gradients of the task loss with respect to a head mask and an FFN-neuron mask (all ones) on
   `--rows` training rows sampled with replacement, batches of 32; importance = the diagonal Fisher (sum of squared
   per-batch gradients); heads and neurons ranked globally and the number of heads chosen to maximise the summed
   importance under the MAC constraint (MACs of the encoder's heads and neurons at the task's average dev length).
2. Mask rearrangement: per layer, the same number of kept heads / neurons, chosen greedily to minimise the squared
   norm of the summed gradients of the pruned ones (the block-diagonal Fisher).
3. Mask tuning ("rescale"): layer by layer, the kept heads' and neurons' mask values are solved by least squares
   (LSMR, damp=1, around 1) so that each sublayer's output matches a teacher, the model masked at the first step of a
   two-step schedule (constraint ** 0.5); the last layer's FFN matches the [CLS] token only. A failed or
   out-of-range solve stops the tuning there, as in the reference.

Then, unlike the reference (which keeps masks), the pruned heads and neurons are removed and the tuned mask values
folded into the attention output and FFN output projections, so the saved model computes exactly what the masked
model computes (checked here on a batch: `max_abs_logit_diff` in shapes.json) with real, smaller modules.

What differs from the reference, and why: it runs on the CPU (the reference calls `.cuda()` throughout and needs an
NVIDIA GPU); LSMR is scipy's (the reference uses `cupyx.scipy.sparse.linalg.lsmr`, a port of scipy's, on the GPU),
with cupy's default iteration limit (5 x min(m, n); scipy's is min(m, n));
the model is loaded with `attn_implementation="eager"` (transformers 4.44's SDPA path ignores nothing here but
expands the attention mask, which the reference's padding removal reads as [batch, 1, 1, length]); rows come from the
leaderboard's JSON instead of `datasets.load_dataset("glue")`. The reference has no license file, so it is not
vendored: this file implements the same computations (function for function, including the order of the forward
hooks, which decides what the teacher's FFN output is); the test `tests/test_kwon_peer.py` compares the masks with
the reference's when KWON_REFERENCE_DIR points at a checkout of it.

Venv: `benchmarks/setup_kwon.sh` (transformers 4.44.2: the method passes `head_mask=` and calls BertLayer
positionally, which transformers 5 removed; scipy for LSMR). Run (what leaderboard_kwon.py runs):

    .venv-kwon/bin/python benchmarks/kwon_prune.py --model_dir PARENT --data TRAIN.json --task sst2 \
        --constraint 0.3 --output_dir OUT
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import scipy
import torch
import transformers
from safetensors.torch import save_file
from scipy.sparse.linalg import lsmr
from transformers import BertForSequenceClassification


REFERENCE_COMMIT = "806ac5a6ff53b4978e5330d45a3de692493e4d0b"
# The reference's `avg_seq_length` (GLUE dev sets), the sequence length its MAC constraint is computed at.
AVG_SEQ_LENGTH = {
    "stsb": 31.47,
    "mrpc": 53.24,
    "rte": 64.59,
    "sst2": 25.16,
    "qqp": 30.55,
    "qnli": 50.97,
    "cola": 11.67,
    "mnli": 39.05,
}


# ----- data -----


def batches(data: dict, index: list, batch_size: int) -> list:
    """Padded batches of the rows `index`, in order (the reference's DataCollatorWithPadding, shuffle=False)."""
    out = []
    for start in range(0, len(index), batch_size):
        rows = index[start : start + batch_size]
        length = max(len(data["input_ids"][i]) for i in rows)
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        types, mask = torch.zeros_like(ids), torch.zeros_like(ids)
        for row, i in enumerate(rows):
            n = len(data["input_ids"][i])
            ids[row, :n] = torch.tensor(data["input_ids"][i])
            types[row, :n] = torch.tensor(data["token_type_ids"][i])
            mask[row, :n] = 1
        labels = torch.tensor([data["labels"][i] for i in rows])
        out.append({"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels})
    return out


def fresh(loader: list) -> list:
    """A new copy of the batches' dicts, as iterating a DataLoader again gives (the reference mutates them)."""
    return [dict(batch) for batch in loader]


# ----- the model's parts (reference: utils/arch.py) -----


def get_layers(model):
    return model.bert.encoder.layer


def remove_padding(hidden_states, attention_mask):
    nonzero = torch.nonzero(attention_mask.reshape(-1)).squeeze()
    hidden_states = hidden_states.reshape(-1, hidden_states.shape[2])
    return torch.index_select(hidden_states, dim=0, index=nonzero).contiguous()


def apply_neuron_mask(model, neuron_mask):
    """Multiply each layer's FFN intermediate activations (the input of `output.dense`) by its mask row."""
    handles = []
    for layer_idx, layer in enumerate(get_layers(model)):
        row = neuron_mask[layer_idx]
        handles.append(layer.output.register_forward_pre_hook(lambda _, inputs, row=row: (inputs[0] * row, inputs[1])))
    return handles


class MaskNeurons:
    def __init__(self, model, neuron_mask):
        self.handles = apply_neuron_mask(model, neuron_mask)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def hijack_input(module, captured: list):
    return module.register_forward_pre_hook(lambda _, inputs: captured.append(inputs))


@torch.no_grad()
def collect_layer_inputs(model, head_mask, neuron_mask, layer_idx, prev_inputs):
    """The positional inputs of layer `layer_idx` under the masks (reference: utils/arch.py)."""
    layers = get_layers(model)
    inputs = []
    if layer_idx == 0:
        handle = hijack_input(layers[0], inputs)
        for batch in prev_inputs:
            with MaskNeurons(model, neuron_mask):
                model(head_mask=head_mask, **batch)
        handle.remove()
        return [list(x) for x in inputs]
    prev_layer = layers[layer_idx - 1]
    for batch in prev_inputs:
        batch[2] = head_mask[layer_idx - 1].view(1, -1, 1, 1)
        with MaskNeurons(model, neuron_mask):
            prev_output = prev_layer(*batch)
        batch[0] = prev_output[0]
        batch[2] = head_mask[layer_idx].view(1, -1, 1, 1)
        inputs.append(batch)
    return inputs


# ----- 1. mask search (reference: prune/fisher.py, prune/search.py, efficiency/mac.py) -----


def collect_mask_grads(model, head_mask, neuron_mask, loader):
    head_mask.requires_grad_(True)
    neuron_mask.requires_grad_(True)
    handles = apply_neuron_mask(model, neuron_mask)
    model.eval()
    head_grads, neuron_grads = [], []
    for batch in loader:
        model(head_mask=head_mask, **batch).loss.backward()
        head_grads.append(head_mask.grad.detach())
        head_mask.grad = None
        neuron_grads.append(neuron_mask.grad.detach())
        neuron_mask.grad = None
    for handle in handles:
        handle.remove()
    head_mask.requires_grad_(False)
    neuron_mask.requires_grad_(False)
    return torch.stack(head_grads), torch.stack(neuron_grads)


def mac_per_head(seq_len, hidden_size, head_size):
    return (
        3 * seq_len * hidden_size * head_size + 2 * seq_len * seq_len * head_size + seq_len * head_size * hidden_size
    )


def mac_per_neuron(seq_len, hidden_size):
    return 2 * seq_len * hidden_size


def compute_mac(heads_per_layer, neurons_per_layer, seq_len, hidden_size, head_size):
    mac = 0.0
    for heads, neurons in zip(heads_per_layer, neurons_per_layer):
        mac += heads * mac_per_head(seq_len, hidden_size, head_size) + neurons * mac_per_neuron(seq_len, hidden_size)
    return mac


def compute_mask_mac(head_mask, neuron_mask, seq_len, hidden_size):
    layers, heads = head_mask.shape
    head_size = int(hidden_size / heads)
    original = compute_mac([heads] * layers, [neuron_mask.shape[1]] * layers, seq_len, hidden_size, head_size)
    pruned = compute_mac((head_mask != 0).sum(1), (neuron_mask != 0).sum(1), seq_len, hidden_size, head_size)
    return float(pruned), float(original)


@torch.no_grad()
def search_mac(config, head_grads, neuron_grads, seq_len, mac_constraint):
    assert mac_constraint < 1
    layers, heads = config.num_hidden_layers, config.num_attention_heads
    inter, hidden = config.intermediate_size, config.hidden_size
    head_size = int(hidden / heads)
    max_mac = mac_constraint * compute_mac([heads] * layers, [inter] * layers, seq_len, hidden, head_size)
    head_importance = head_grads.pow(2).sum(dim=0)  # the diagonal Fisher
    neuron_importance = neuron_grads.pow(2).sum(dim=0)
    sorted_head_importance, sorted_head_indices = head_importance.view(-1).sort(descending=True)
    sorted_neuron_importance, sorted_neuron_indices = neuron_importance.view(-1).sort(descending=True)
    max_importance = 0
    head_indices = neuron_indices = None
    for num_heads in range(1, layers * heads + 1):
        neurons_mac = max_mac - mac_per_head(seq_len, hidden, head_size) * num_heads
        num_neurons = max(int(neurons_mac / mac_per_neuron(seq_len, hidden)), 0)
        total = sorted_head_importance[:num_heads].sum() + sorted_neuron_importance[:num_neurons].sum()
        if total > max_importance:
            max_importance = total
            head_indices = sorted_head_indices[:num_heads]
            neuron_indices = sorted_neuron_indices[:num_neurons]
    if head_indices is None:
        raise ValueError(f"no mask has positive importance under the MAC constraint {mac_constraint}")
    head_mask = torch.zeros(layers * heads)
    head_mask[head_indices] = 1.0
    neuron_mask = torch.zeros(layers * inter)
    neuron_mask[neuron_indices] = 1.0
    return head_mask.view(layers, heads), neuron_mask.view(layers, inter)


def get_pruning_schedule(target, num_iter):
    p = math.pow(target, 1 / num_iter)
    return [p**i for i in range(1, num_iter)] + [target]


# ----- 2. mask rearrangement (reference: prune/rearrange.py) -----


@torch.no_grad()
def greedy_rearrange(mask, grads):
    num_unpruned = int(mask.sum())
    num_pruned = mask.shape[0] - num_unpruned
    if num_unpruned == 0 or num_pruned == 0:
        return mask
    grads = grads.permute(1, 0).contiguous()  # [heads or neurons, batches]
    _, indices = grads.pow(2).sum(dim=1).sort(descending=False)
    indices = indices.tolist()
    masked = indices[:num_pruned]
    for index in indices[num_pruned:]:
        masked.append(index)
        vectors = grads[masked]
        complement = vectors.sum(dim=0) - vectors
        del masked[complement.pow(2).sum(dim=1).argmin()]
    new_mask = torch.ones_like(mask)
    new_mask[masked] = 0
    return new_mask


def rearrange_mask(mask, grads):
    mask = mask.clone()
    for i in range(mask.shape[0]):
        mask[i] = greedy_rearrange(mask[i], grads[:, i, :])
    return mask


# ----- 3. mask tuning (reference: prune/rescale.py, utils/linalg.py) -----


@torch.no_grad()
def lsmr_solver(A, B):
    """The reference's `lsmr_cupy_solver` with scipy's LSMR: solve A x = B around x = 1, damped."""
    B = B - A.sum(dim=1)
    if B.shape[0] == 1:  # the reference reads an undefined `solution` here (a NameError): taken as solved
        X, success = B / A[0, 0], True
    else:
        # float32 in, as the reference hands cupy; cupyx's LSMR iterates up to 5 x min(m, n) times where scipy's
        # stops at min(m, n) by default (which makes most of these small damped systems "not converge"): cupy's.
        solution = lsmr(A.numpy(), B.numpy(), damp=1, maxiter=5 * min(A.shape))
        X, success = torch.from_numpy(solution[0]), solution[1] < 3  # float64, as the reference
    return X + 1, success


@torch.no_grad()
def get_mha_lstsq(model, config, teacher_inputs, teacher_neuron_mask, student_inputs, student_head_mask,
                  student_neuron_mask, layer_idx):  # fmt: skip
    heads, hidden = config.num_attention_heads, config.hidden_size
    head_size = int(hidden / heads)
    nonzero_heads = student_head_mask[layer_idx].nonzero().flatten()
    num_nonzero = nonzero_heads.shape[0]
    layer = get_layers(model)[layer_idx]
    mha_proj = layer.attention.output
    weights_per_head = mha_proj.dense.weight.t().view(heads, -1, hidden).index_select(dim=0, index=nonzero_heads)
    inputs = []
    handle = hijack_input(mha_proj, inputs)
    ATA = torch.zeros(num_nonzero + 1, num_nonzero + 1)
    ATB = torch.zeros(num_nonzero + 1)
    for teacher_batch, student_batch in zip(teacher_inputs, student_inputs):
        attention_mask = teacher_batch[1] == 0
        student_batch[2] = student_head_mask[layer_idx].view(1, -1, 1, 1)
        with MaskNeurons(model, teacher_neuron_mask):
            layer(*teacher_batch)
        hidden_states, input_tensor = inputs.pop(0)
        teacher_output = remove_padding(mha_proj.dense(hidden_states) + input_tensor, attention_mask)
        with MaskNeurons(model, student_neuron_mask):
            layer(*student_batch)
        hidden_states, input_tensor = inputs.pop(0)
        hidden_states = remove_padding(hidden_states, attention_mask)
        input_tensor = remove_padding(input_tensor, attention_mask)
        hidden_states = hidden_states.view(-1, heads, head_size).permute(1, 0, 2).index_select(0, nonzero_heads)
        A = (hidden_states @ weights_per_head).view(num_nonzero, -1).t()
        A = torch.cat([A, torch.ones(A.shape[0], 1)], dim=1)
        B = (teacher_output - mha_proj.dense.bias - input_tensor).flatten()
        ATA += A.t() @ A
        ATB += A.t() @ B
    handle.remove()
    return ATA, ATB


@torch.no_grad()
def get_ffn_lstsq(model, config, teacher_inputs, teacher_neuron_mask, student_inputs, student_head_mask,
                  student_neuron_mask, layer_idx, cls_only=False):  # fmt: skip
    layer = get_layers(model)[layer_idx]
    ffn2 = layer.output
    nonzero_neurons = student_neuron_mask[layer_idx].nonzero().flatten()
    num_neurons = nonzero_neurons.shape[0]
    weights_per_neuron = ffn2.dense.weight.t().index_select(dim=0, index=nonzero_neurons)
    W = weights_per_neuron @ weights_per_neuron.t()
    inputs = []
    # Registered before the neuron masks, so it sees this layer's unmasked activations (as in the reference).
    handle = hijack_input(ffn2, inputs)
    ATA = torch.zeros(num_neurons, num_neurons)
    ATB = torch.zeros(num_neurons)
    for teacher_batch, student_batch in zip(teacher_inputs, student_inputs):
        attention_mask = teacher_batch[1] == 0
        student_batch[2] = student_head_mask[layer_idx].view(1, -1, 1, 1)
        with MaskNeurons(model, teacher_neuron_mask):
            layer(*teacher_batch)
        hidden_states, input_tensor = inputs.pop(0)
        teacher_output = ffn2.dense(hidden_states) + input_tensor
        if cls_only:
            teacher_output = teacher_output[:, 0, :]
        else:
            teacher_output = remove_padding(teacher_output, attention_mask)
        with MaskNeurons(model, student_neuron_mask):
            layer(*student_batch)
        hidden_states, input_tensor = inputs.pop(0)
        if cls_only:
            hidden_states, input_tensor = hidden_states[:, 0, :], input_tensor[:, 0, :]
        else:
            hidden_states = remove_padding(hidden_states, attention_mask)
            input_tensor = remove_padding(input_tensor, attention_mask)
        hidden_states = hidden_states.t().index_select(dim=0, index=nonzero_neurons)
        ATA += W * (hidden_states @ hidden_states.t())
        B = teacher_output - ffn2.dense.bias - input_tensor
        ATB += (hidden_states.unsqueeze(1) @ (weights_per_neuron @ B.t()).unsqueeze(2)).squeeze()
    handle.remove()
    return ATA, ATB


@torch.no_grad()
def rescale_mask(model, config, teacher_head_mask, teacher_neuron_mask, student_head_mask, student_neuron_mask,
                 loader, classification_task=True):  # fmt: skip
    """Returns the tuned masks and the layer where the tuning stopped (None: it went through every layer)."""
    layers = config.num_hidden_layers
    head_mask, neuron_mask = student_head_mask.clone(), student_neuron_mask.clone()
    stopped = None
    teacher_inputs = student_inputs = None
    for layer_idx in range(layers):
        teacher_inputs = collect_layer_inputs(
            model,
            teacher_head_mask,
            teacher_neuron_mask,
            layer_idx,
            fresh(loader) if layer_idx == 0 else teacher_inputs,
        )
        student_inputs = collect_layer_inputs(
            model, head_mask, neuron_mask, layer_idx, fresh(loader) if layer_idx == 0 else student_inputs
        )
        if torch.count_nonzero(student_head_mask[layer_idx]) != 0 and layer_idx != 0:
            ATA, ATB = get_mha_lstsq(
                model, config, teacher_inputs, teacher_neuron_mask, student_inputs, head_mask, neuron_mask, layer_idx
            )
            scale, success = lsmr_solver(ATA, ATB)
            if not success or scale[:-1].max() > 10 or scale[:-1].min() < -10:
                stopped = {"layer": layer_idx, "part": "attention", "converged": bool(success)}
                break
            for index, value in zip(head_mask[layer_idx].nonzero().flatten(), scale[:-1]):
                head_mask[layer_idx][index] *= value
        if torch.count_nonzero(student_neuron_mask[layer_idx]) != 0:
            ATA, ATB = get_ffn_lstsq(
                model, config, teacher_inputs, teacher_neuron_mask, student_inputs, head_mask, neuron_mask,
                layer_idx, cls_only=classification_task and layer_idx == layers - 1,
            )  # fmt: skip
            scale, success = lsmr_solver(ATA, ATB)
            if not success or scale.max() > 10 or scale.min() < -10:
                stopped = {"layer": layer_idx, "part": "ffn", "converged": bool(success)}
                break
            for index, value in zip(neuron_mask[layer_idx].nonzero().flatten(), scale):
                neuron_mask[layer_idx][index] *= value
    return head_mask, neuron_mask, stopped


# ----- the whole method, and the masks made real -----


def mask_grads(model, loader, cache: Path | None = None, fingerprint: str = "") -> tuple:
    """The head and neuron mask gradients per batch, from `cache` when it holds those of the same `fingerprint`
    (model, rows, seed): the shapes-only call and the prune call of one leaderboard cell share them."""
    if cache is not None and cache.exists():
        saved = torch.load(cache)
        if saved["fingerprint"] == fingerprint:
            return saved["head_grads"], saved["neuron_grads"]
    config = model.config
    for param in model.parameters():
        param.requires_grad_(False)
    full_head = torch.ones(config.num_hidden_layers, config.num_attention_heads)
    full_neuron = torch.ones(config.num_hidden_layers, config.intermediate_size)
    head_grads, neuron_grads = collect_mask_grads(model, full_head, full_neuron, fresh(loader))
    if cache is not None:
        staging = cache.with_name(f"{cache.name}.tmp")
        torch.save({"fingerprint": fingerprint, "head_grads": head_grads, "neuron_grads": neuron_grads}, staging)
        staging.replace(cache)
    return head_grads, neuron_grads


def kwon_prune(model, loader, constraint: float, seq_len: float, grads: tuple | None = None) -> dict:
    """Kwon et al.'s three steps (the reference's main.py with --metric mac) on `model` (eager attention, eval);
    `grads`: the mask gradients on `loader`'s batches when already computed."""
    config = model.config
    for param in model.parameters():
        param.requires_grad_(False)
    start = time.perf_counter()
    head_grads, neuron_grads = mask_grads(model, loader) if grads is None else grads
    teacher_constraint = get_pruning_schedule(target=constraint, num_iter=2)[0]
    teacher_head, teacher_neuron = search_mac(config, head_grads, neuron_grads, seq_len, teacher_constraint)
    head_mask, neuron_mask = search_mac(config, head_grads, neuron_grads, seq_len, constraint)
    searched = time.perf_counter()
    head_mask = rearrange_mask(head_mask, head_grads)
    neuron_mask = rearrange_mask(neuron_mask, neuron_grads)
    rearranged = time.perf_counter()
    tuned_head, tuned_neuron, stopped = rescale_mask(
        model, config, teacher_head, teacher_neuron, head_mask, neuron_mask, loader, classification_task=True
    )
    done = time.perf_counter()
    pruned_mac, original_mac = compute_mask_mac(head_mask, neuron_mask, seq_len, config.hidden_size)
    return {
        "head_mask": tuned_head,
        "neuron_mask": tuned_neuron,
        "binary_head_mask": head_mask,
        "binary_neuron_mask": neuron_mask,
        "teacher_constraint": teacher_constraint,
        "mac_fraction": pruned_mac / original_mac,
        "tuning_stopped": stopped,
        "seconds": {
            "search": searched - start,
            "rearrange": rearranged - searched,
            "tune": done - rearranged,
            "total": done - start,
        },
    }


def searched_shapes(config, grads: tuple, constraints: list, seq_len: float) -> dict:
    """The per-layer shapes the mask search gives at each MAC constraint (step 1 only)."""
    head_grads, neuron_grads = grads
    head_size = config.hidden_size // config.num_attention_heads
    shapes = {}
    for constraint in constraints:
        head_mask, neuron_mask = search_mac(config, head_grads, neuron_grads, seq_len, constraint)
        shapes[str(constraint)] = [
            {"heads": int(h), "head_dim": head_size if h else 0, "intermediate": int(n)}
            for h, n in zip(head_mask.sum(1).tolist(), neuron_mask.sum(1).tolist())
        ]
    return shapes


@torch.no_grad()
def masked_logits(model, head_mask, neuron_mask, batch):
    with MaskNeurons(model, neuron_mask):
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(head_mask=head_mask, **inputs).logits


@torch.no_grad()
def remove_masked(model, head_mask, keep_heads, neuron_mask, keep_neurons) -> list:
    """Fold the tuned mask values into the output projections and remove the pruned heads and neurons in place;
    returns the per-layer shapes."""
    config = model.config
    head_size = config.hidden_size // config.num_attention_heads
    shapes = []
    for layer_idx, layer in enumerate(get_layers(model)):
        heads = keep_heads[layer_idx].nonzero().flatten()
        attention = layer.attention
        scale = head_mask[layer_idx].repeat_interleave(head_size)  # context columns, head by head
        attention.output.dense.weight.mul_(scale)
        columns = (heads[:, None] * head_size + torch.arange(head_size)).flatten()
        for name in ("query", "key", "value"):
            setattr(attention.self, name, _take(getattr(attention.self, name), columns, dim=0))
        attention.output.dense = _take(attention.output.dense, columns, dim=1)
        attention.self.num_attention_heads = len(heads)
        attention.self.all_head_size = len(heads) * head_size
        neurons = keep_neurons[layer_idx].nonzero().flatten()
        layer.output.dense.weight.mul_(neuron_mask[layer_idx])
        layer.intermediate.dense = _take(layer.intermediate.dense, neurons, dim=0)
        layer.output.dense = _take(layer.output.dense, neurons, dim=1)
        shapes.append({"heads": len(heads), "head_dim": head_size if len(heads) else 0, "intermediate": len(neurons)})
    return shapes


def _take(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    weight = linear.weight.index_select(dim, index)
    new = torch.nn.Linear(weight.shape[1], weight.shape[0])
    new.weight.data.copy_(weight)
    new.bias.data.copy_(linear.bias if dim == 1 else linear.bias.index_select(0, index))
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data", required=True, help="JSON with input_ids, token_type_ids, labels lists.")
    parser.add_argument("--task", required=True, choices=sorted(AVG_SEQ_LENGTH), help="For the MAC's length.")
    parser.add_argument("--constraint", type=float, nargs="+", required=True, help="MAC fraction kept (< 1).")
    parser.add_argument(
        "--shapes_only",
        action="store_true",
        help="Only the mask search, for every --constraint: print the per-layer shapes each gives (the tuning "
        "changes values, not shapes), so the caller can time the shapes before paying for the tuning.",
    )
    parser.add_argument("--rows", type=int, default=2048, help="Rows sampled for the search (reference: 2048).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", help="Where the pruned model goes (not with --shapes_only).")
    parser.add_argument("--grads", help="A file for the mask gradients, reused by a later call on the same rows.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.set_seed(args.seed)  # the reference's set_seed: numpy's sampling below follows from it
    model = BertForSequenceClassification.from_pretrained(args.model_dir, attn_implementation="eager").eval()
    data = json.loads(Path(args.data).read_text())
    index = np.random.choice(len(data["labels"]), args.rows).tolist()  # with replacement, as the reference
    loader = batches(data, index, 32)
    seq_len = AVG_SEQ_LENGTH[args.task]
    weights = sorted(Path(args.model_dir).glob("*.safetensors")) + [Path(args.data)]
    fingerprint = json.dumps([[str(w), w.stat().st_size, w.stat().st_mtime_ns] for w in weights] + index)
    start = time.perf_counter()
    grads = mask_grads(model, loader, Path(args.grads) if args.grads else None, fingerprint)
    grads_seconds = time.perf_counter() - start  # about 0 when --grads held this model's and rows' gradients
    if args.shapes_only:
        print(json.dumps(searched_shapes(model.config, grads, args.constraint, seq_len)))
        return
    if len(args.constraint) != 1:
        parser.error("one --constraint at a time, except with --shapes_only")
    if args.output_dir is None:
        parser.error("--output_dir is required (except with --shapes_only)")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = kwon_prune(model, loader, args.constraint[0], seq_len, grads)
    reference = masked_logits(model, result["head_mask"], result["neuron_mask"], loader[0])
    layers = remove_masked(
        model, result["head_mask"], result["binary_head_mask"], result["neuron_mask"], result["binary_neuron_mask"]
    )
    with torch.no_grad():
        pruned = model(**{k: v for k, v in loader[0].items() if k != "labels"}).logits
        check = batches(data, index[:8], 8)[0]  # for the caller's round-trip check of the saved model
        check_logits = model(**{k: v for k, v in check.items() if k != "labels"}).logits
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        if ".attention.self." in key and layers[int(key.split(".")[3])]["heads"] == 0:
            continue  # the leaderboard's layer without heads has no query/key/value
        state[key] = value.contiguous()
    save_file(state, out / "model.safetensors")
    info = {
        "tool": f"Kwon et al. 2022 retraining-free pruning (reference {REFERENCE_COMMIT[:7]}), mac constraint",
        "constraint": args.constraint[0],
        "teacher_constraint": result["teacher_constraint"],
        "mac_fraction": result["mac_fraction"],
        "mac_seq_len": seq_len,
        "search_rows": args.rows,
        "tuning_stopped": result["tuning_stopped"],
        "max_abs_logit_diff": float((pruned - reference).abs().max()),
        "check": {"rows": index[:8], "logits": check_logits.tolist()},
        "mask_grads_seconds": grads_seconds,
        "prune_seconds": result["seconds"],
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "scipy": scipy.__version__,
    }
    (out / "shapes.json").write_text(
        json.dumps({"hidden": model.config.hidden_size, "layers": layers, "info": info}, indent=1)
    )
    print(json.dumps({"layers": layers, **info}))


if __name__ == "__main__":
    main()
