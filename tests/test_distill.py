"""Distillation losses against explicit references, and the DistillationTrainer's handling of teacher and projection."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertModel, TrainerCallback

from hf_bort import BortForMaskedLM
from hf_bort.distill import (
    PROJECTOR_WEIGHTS_NAME,
    DistillationArguments,
    DistillationTrainer,
    HiddenStateProjector,
    attention_kl,
    distillation_kl,
    hidden_state_mse,
    layer_map,
    resolve_signals,
)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_distillation_kl_matches_explicit_sum_over_masked_positions():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7, dtype=torch.float64), torch.randn(2, 5, 7, dtype=torch.float64) * 3
    mask = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 1, 1, 0]], dtype=torch.bool)
    temperature = 2.0
    total, count = 0.0, 0
    for b in range(2):
        for t in range(5):
            if not mask[b, t]:
                continue
            p_t = _softmax(teacher[b, t].numpy() / temperature)
            p_s = _softmax(student[b, t].numpy() / temperature)
            total += sum(p_t[v] * (math.log(p_t[v]) - math.log(p_s[v])) for v in range(7))
            count += 1
    expected = temperature**2 * total / count
    got = distillation_kl(student, teacher, temperature, mask)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_distillation_kl_is_zero_for_identical_logits_and_without_masked_positions():
    logits = torch.randn(1, 4, 9)
    assert distillation_kl(logits, logits.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    empty = distillation_kl(logits, torch.randn(1, 4, 9), 2.0, torch.zeros(1, 4, dtype=torch.bool))
    assert empty.item() == 0.0


def test_layer_map_is_uniform_and_keeps_endpoints():
    assert layer_map(4, 6) == [0, 2, 3, 5, 6]  # floor(i * 6 / 4 + 1/2)
    assert layer_map(3, 3) == [0, 1, 2, 3]
    mapping = layer_map(5, 24)
    assert mapping[0] == 0 and mapping[-1] == 24 and mapping == sorted(set(mapping))
    with pytest.raises(ValueError, match="at least one layer"):
        layer_map(0, 6)


def test_hidden_state_mse_matches_manual_loop_on_unpadded_tokens():
    torch.manual_seed(0)
    student = tuple(torch.randn(2, 3, 4) for _ in range(3))  # embeddings + 2 layers
    teacher = tuple(torch.randn(2, 3, 6) for _ in range(5))  # embeddings + 4 layers
    projector = HiddenStateProjector(4, 6)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    per_layer = []
    for s_index, t_index in zip(range(3), (0, 2, 4)):
        errors = [
            ((projector(student[s_index][b, t]) - teacher[t_index][b, t]) ** 2).mean()
            for b in range(2)
            for t in range(3)
            if mask[b, t]
        ]
        per_layer.append(torch.stack(errors).mean())
    expected = torch.stack(per_layer).mean()
    assert hidden_state_mse(student, teacher, projector, mask).item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("student_heads", [2, 3])
def test_attention_kl_matches_manual_loop(student_heads):
    torch.manual_seed(0)
    student = tuple(torch.randn(1, student_heads, 3, 3).softmax(-1) for _ in range(2))
    teacher = tuple(torch.randn(1, 2, 3, 3).softmax(-1) for _ in range(4))
    mask = torch.tensor([[1, 1, 0]])
    per_layer = []
    for s_index, t_layer in zip(range(2), (2, 4)):  # student layers 1, 2 -> teacher layers 2, 4
        s, t = student[s_index], teacher[t_layer - 1]
        if student_heads != 2:
            s, t = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
        rows = [
            sum(t[0, h, q, k] * (t[0, h, q, k].log() - s[0, h, q, k].log()) for k in range(3))
            for h in range(s.shape[1])
            for q in range(3)
            if mask[0, q]
        ]
        per_layer.append(torch.stack(rows).mean())
    expected = torch.stack(per_layer).mean()
    assert attention_kl(student, teacher, mask).item() == pytest.approx(expected.item(), rel=1e-5)


def _teacher(vocab_size: int = 99, head: bool = True, hidden: int = 48):
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(1)
    return (BertForMaskedLM if head else BertModel)(config)


def test_resolve_signals_picks_logits_or_hidden_and_explains_impossible_logit_kd(tiny_bort_config):
    student = BortForMaskedLM(tiny_bort_config)
    assert resolve_signals(student, _teacher(), ["auto"]) == ["logits"]
    assert resolve_signals(student, _teacher(head=False), ["auto"]) == ["hidden"]
    with pytest.raises(ValueError, match="no masked-LM head.*distill_signals='hidden'"):
        resolve_signals(student, _teacher(head=False), ["logits"])
    with pytest.raises(ValueError, match="vocab_size=120 differs from student vocab_size=99"):
        resolve_signals(student, _teacher(vocab_size=120), ["logits", "hidden"])


def test_distillation_arguments_reject_bad_values(tmp_path):
    with pytest.raises(ValueError, match="temperature must be positive"):
        DistillationArguments(output_dir=str(tmp_path), temperature=0.0)
    with pytest.raises(ValueError, match="unknown signals \\['logit'\\]"):
        DistillationArguments(output_dir=str(tmp_path), distill_signals="logit,hidden")


class _RandomBlocks(torch.utils.data.Dataset):
    """Fixed random token blocks with ~30% of positions masked for the loss."""

    def __init__(self, rows: int = 16, length: int = 12, vocab: int = 99):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, vocab, (rows, length), generator=generator)
        keep = torch.rand(rows, length, generator=generator) < 0.3
        self.labels = torch.where(keep, self.ids, torch.full_like(self.ids, -100))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def _trainer(tmp_path, student, teacher, max_steps=4, **kwargs):
    args = DistillationArguments(
        output_dir=str(tmp_path), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to="none", save_strategy="steps", save_steps=2, logging_steps=1, use_cpu=True, disable_tqdm=True,
        seed=0, **kwargs,
    )  # fmt: skip
    return DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=_RandomBlocks())


def test_compute_loss_is_the_weighted_sum_of_the_terms(tmp_path, tiny_bort_config):
    student, teacher = BortForMaskedLM(tiny_bort_config), _teacher()
    trainer = _trainer(tmp_path, student, teacher, distill_signals="logits,hidden,attentions", hidden_weight=0.3)
    batch = {
        k: torch.stack([_RandomBlocks()[i][k] for i in range(4)]) for k in ("input_ids", "attention_mask", "labels")
    }
    student.eval()
    loss = trainer.compute_loss(student, dict(batch))

    with torch.no_grad():
        s = student(**batch, output_hidden_states=True, output_attentions=True)
        t = teacher(**batch, output_hidden_states=True, output_attentions=True)
        masked = batch["labels"] != -100
        expected = (
            0.1 * s.loss
            + 0.5 * distillation_kl(s.logits, t.logits, 2.0, masked)
            + 0.3 * hidden_state_mse(s.hidden_states, t.hidden_states, trainer.projector, batch["attention_mask"])
            + 1.0 * attention_kl(s.attentions, t.attentions, batch["attention_mask"])
        )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_updates_student_and_projection_never_the_teacher_and_resumes(tmp_path, tiny_bort_config):
    student, teacher = BortForMaskedLM(tiny_bort_config), _teacher(head=False)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = _trainer(tmp_path, student, teacher)
    assert trainer.signals == ["hidden"] and isinstance(trainer.projector, HiddenStateProjector)
    projector_before = trainer.projector.proj.weight.detach().clone()
    embeddings_before = student.bort.embeddings.word_embeddings.weight.detach().clone()
    trainer.train()

    assert not trainer.teacher.training
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert not torch.equal(trainer.projector.proj.weight, projector_before)
    assert not torch.equal(student.bort.embeddings.word_embeddings.weight, embeddings_before)
    logged = [entry for entry in trainer.state.log_history if "hidden_loss" in entry]
    assert logged and all(math.isfinite(entry["hidden_loss"]) for entry in logged)

    # The projection is saved with each checkpoint (by a callback) and restored bit-exact on resume, before the first
    # step; resume_from_checkpoint=True finds the last checkpoint.
    for checkpoint, resume in (("checkpoint-2", str(tmp_path / "checkpoint-2")), ("checkpoint-4", True)):
        saved = load_file(tmp_path / checkpoint / PROJECTOR_WEIGHTS_NAME)
        resumed = _trainer(tmp_path, BortForMaskedLM(tiny_bort_config), _teacher(head=False))
        at_start = _ProjectorAtStart(resumed.projector)
        resumed.add_callback(at_start)
        resumed.train(resume_from_checkpoint=resume)
        assert resumed.state.global_step == 4
        assert at_start.state.keys() == saved.keys()
        assert all(torch.equal(at_start.state[k], v) for k, v in saved.items())


class _ProjectorAtStart(TrainerCallback):
    def __init__(self, projector):
        self.projector = projector

    def on_train_begin(self, args, state, control, **kwargs):
        self.state = {k: v.clone() for k, v in self.projector.state_dict().items()}


def test_resuming_from_a_checkpoint_without_the_projection_is_refused(tmp_path, tiny_bort_config):
    """A checkpoint without the projection cannot silently restart it from scratch."""
    _trainer(tmp_path, BortForMaskedLM(tiny_bort_config), _teacher(head=False), max_steps=2).train()
    (tmp_path / "checkpoint-2" / PROJECTOR_WEIGHTS_NAME).unlink()
    resumed = _trainer(tmp_path, BortForMaskedLM(tiny_bort_config), _teacher(head=False))
    with pytest.raises(FileNotFoundError, match=f"checkpoint-2 has no {PROJECTOR_WEIGHTS_NAME}"):
        resumed.train(resume_from_checkpoint=True)


def test_projection_is_in_the_optimizer_and_not_in_the_saved_student(tmp_path, tiny_bort_config):
    trainer = _trainer(tmp_path, BortForMaskedLM(tiny_bort_config), _teacher(head=False), max_steps=1)
    optimizer = trainer.create_optimizer()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert any(p is trainer.projector.proj.weight for p in params)
    trainer.save_model(str(tmp_path / "final"))
    assert not any("proj" in key for key in load_file(tmp_path / "final" / "model.safetensors"))


def test_same_width_needs_no_projection(tmp_path, tiny_bort_config):
    trainer = _trainer(tmp_path, BortForMaskedLM(tiny_bort_config), _teacher(head=False, hidden=32), max_steps=1)
    assert trainer.projector is None and isinstance(trainer.teacher, nn.Module)


def test_a_bare_encoder_student_learns_from_hidden_states_alone(tmp_path, tiny_bort_config):
    from hf_bort import BortModel

    student, teacher = BortModel(tiny_bort_config), _teacher(head=False)
    with pytest.raises(ValueError, match="mlm_weight=0.1 needs a student with a masked-LM head"):
        _trainer(tmp_path / "a", student, teacher, max_steps=1, distill_signals="hidden").train()
    trainer = _trainer(tmp_path / "b", student, teacher, max_steps=1, distill_signals="hidden", mlm_weight=0.0)
    batch = {
        k: torch.stack([_RandomBlocks()[i][k] for i in range(4)]) for k in ("input_ids", "attention_mask", "labels")
    }
    student.eval()
    loss = trainer.compute_loss(student, dict(batch))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        s = student(**inputs, output_hidden_states=True)
        t = teacher(**inputs, output_hidden_states=True)
        expected = hidden_state_mse(s.hidden_states, t.hidden_states, trainer.projector, batch["attention_mask"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)  # the hidden term alone: no MLM term
