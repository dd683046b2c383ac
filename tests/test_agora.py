"""AgoraTrainer, its samplers, teacher and helpers, on tiny random BERTs and slices of real GLUE data."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    TrainerCallback,
    pipeline,
)

from hf_bort.agora import (
    AgoraArguments,
    AgoraTeacher,
    AgoraTrainer,
    CallableSampler,
    EmbeddingNeighbourSampler,
    MaskedLMSampler,
    carve_dev_split,
    sample_near,
)
from hf_bort.glue import load_glue
from tests.conftest import TINY_DIMS, two_process_launcher


LABELS = {"entailment": 0, "not_entailment": 1}


def tiny_classifier(seed: int, label2id=LABELS) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        **TINY_DIMS,
        label2id=label2id,
        id2label={v: k for k, v in label2id.items()},
    )
    return BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def rte():
    from tests.conftest import GLUE_DIR

    train = load_glue("rte", GLUE_DIR, ("train",))["train"].select(range(40))
    return carve_dev_split(train, 0.25, seed=0)


def agora_args(tmp_path, **overrides) -> AgoraArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        agora_rounds=2,
        agora_patience=0,
        samples_per_error=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        agora_max_length=32,
        disable_tqdm=True,
        seed=0,
        agora_allow_weak_teacher=True,  # the tiny random teachers of these tests are no better than chance
    )
    values.update(overrides)
    return AgoraArguments(**values)


# ----- dev split -----


def test_carve_dev_split_is_stratified_disjoint_and_reproducible(glue_dir):
    train = load_glue("mrpc", glue_dir, ("train",))["train"].select(range(200))
    split = carve_dev_split(train, 0.2, seed=3)
    again = carve_dev_split(train, 0.2, seed=3)
    other = carve_dev_split(train, 0.2, seed=4)
    assert list(split["dev"]["idx"]) == list(again["dev"]["idx"]) and list(split["dev"]["idx"]) != list(
        other["dev"]["idx"]
    )
    assert sorted(list(split["train"]["idx"]) + list(split["dev"]["idx"])) == list(train["idx"])
    labels = np.asarray(list(train["label"]))
    for value in (0, 1):
        expected = round(0.2 * int((labels == value).sum()))
        assert sum(1 for x in list(split["dev"]["label"]) if x == value) == expected
    with pytest.raises(ValueError, match="fraction"):
        carve_dev_split(train, 1.5)


# ----- samplers -----


def test_embedding_neighbours_match_brute_force_and_keep_special_tokens(tokenizer):
    torch.manual_seed(0)
    weight = torch.randn(len(tokenizer), 16)
    sampler = EmbeddingNeighbourSampler(weight, tokenizer, replace_fraction=0.5, num_neighbours=3)
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(["cat", "house", "run"]))
    normed = torch.nn.functional.normalize(weight, dim=-1)
    sims = normed[ids] @ normed.T
    sims[:, tokenizer.all_special_ids] = -2.0
    sims[torch.arange(3), ids] = -2.0
    assert torch.equal(sampler.neighbours(ids), sims.topk(3, dim=-1).indices)

    text = "the cat sat in the house"
    source = tokenizer(text)["input_ids"]
    variants = sampler.perturb_ids([text], 5, torch.Generator().manual_seed(0))[0]
    assert len(variants) == 5
    for new in variants:
        changed = [(p, a, b) for p, (a, b) in enumerate(zip(source, new)) if a != b]
        assert len(new) == len(source) and len(changed) == 3  # round(0.5 * 6 words)
        assert all(0 < p < len(source) - 1 for p, _, _ in changed)  # [CLS] and [SEP] stay
        table = sampler.neighbours(torch.tensor([a for _, a, _ in changed])).tolist()
        assert all(b in row for (_, _, b), row in zip(changed, table))
        assert not set(new[1:-1]) & set(tokenizer.all_special_ids)
    decoded = [tokenizer.decode(ids[1:-1]) for ids in variants]
    assert sampler.perturb([text], 5, torch.Generator().manual_seed(0)) == [decoded]


def test_masked_lm_sampler_fills_with_the_top_prediction(tokenizer):
    torch.manual_seed(0)
    mlm = BertForMaskedLM(
        BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37)
    ).eval()
    sampler = MaskedLMSampler(mlm, tokenizer, replace_fraction=0.2, num_neighbours=1)
    text = "a man plays the guitar"
    source = tokenizer(text)["input_ids"]
    new = sampler.perturb_ids([text], 1, torch.Generator().manual_seed(0))[0][0]
    (position,) = [p for p, (a, b) in enumerate(zip(source, new)) if a != b]  # round(0.2 * 5) = 1 token
    masked = list(source)
    masked[position] = tokenizer.mask_token_id
    with torch.no_grad():
        logits = mlm(torch.tensor([masked])).logits[0, position]
    logits[tokenizer.all_special_ids] = float("-inf")
    logits[source[position]] = float("-inf")
    assert new[position] == int(logits.argmax())


def test_sample_near_pairs_and_duplicates():
    sampler = CallableSampler(lambda text, n: [text, text.upper(), text.upper(), text + "!"][:n])
    generator = torch.Generator().manual_seed(0)
    pairs = [("a b", "c d")]
    assert sample_near(sampler, pairs, 4, generator, "first") == [[("A B", "c d"), ("a b!", "c d")]]
    assert sample_near(sampler, pairs, 4, generator, "second") == [[("a b", "C D"), ("a b", "c d!")]]
    assert sample_near(sampler, pairs, 4, generator, "both") == [[("A B", "C D"), ("a b!", "c d!")]]
    either = sample_near(sampler, pairs, 4, generator, "either")[0]
    assert either and all((x == "a b") != (y == "c d") for x, y in either)
    assert sample_near(sampler, [("x",)], 4, generator) == [[("X",), ("x!",)]]


# ----- teacher -----


def test_teacher_forms_agree_and_mismatched_labels_fail(tokenizer):
    model = tiny_classifier(1).eval()
    examples = [("a dog runs", "an animal moves"), ("it rains", "the sun shines")]
    from_model = AgoraTeacher(model, LABELS, tokenizer)(examples)
    encoded = tokenizer(*zip(*examples), padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        reference = model(**encoded).logits.softmax(-1)
    torch.testing.assert_close(from_model.probs, reference)
    pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    torch.testing.assert_close(AgoraTeacher(pipe, LABELS)(examples).probs, reference, atol=1e-5, rtol=1e-4)
    by_name = AgoraTeacher(lambda batch: ["not_entailment"] * len(batch), LABELS)(examples)
    assert by_name.labels.tolist() == [1, 1] and by_name.probs is None

    with pytest.raises(ValueError, match="label2id"):
        AgoraTeacher(tiny_classifier(1, {"yes": 0, "no": 1}), LABELS, tokenizer)
    with pytest.raises(TypeError, match="sequence-classification"):
        AgoraTeacher(BertModel(model.config), LABELS, tokenizer)
    with pytest.raises(ValueError, match="outside"):
        AgoraTeacher(lambda batch: [5] * len(batch), LABELS)(examples)


# ----- trainer -----


class _RecordRounds(TrainerCallback):
    """Remembers the weights each round starts from."""

    def __init__(self):
        self.starts = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def test_agora_rounds_expand_data_with_teacher_labels_and_provenance(tmp_path, rte, tokenizer):
    teacher = tiny_classifier(1)
    original_fingerprint = rte["train"]._fingerprint
    trainer = AgoraTrainer(
        model=tiny_classifier(0),
        args=agora_args(tmp_path),
        train_dataset=rte["train"],
        agora_dev_dataset=rte["dev"],
        teacher=teacher,
        processing_class=tokenizer,
    )
    errors_seen = []
    real_score = trainer._agora_score

    def evaluate(dataset):
        metric, predicted, wrong = real_score(dataset)
        errors_seen.append(wrong)
        return metric, predicted, wrong

    trainer._agora_score = evaluate
    trainer.train()

    history = trainer.agora_history
    generated = trainer.agora_generated
    assert [r.round for r in history] == [1, 2] and history[0].dev_errors == len(errors_seen[0]) > 0
    assert history[0].train_size == len(rte["train"]) and history[1].train_size == len(rte["train"]) + len(generated)
    assert history[0].kept == len(generated) > 0 and history[1].kept == 0  # nothing is generated after the last round
    assert set(list(generated["agora_source_index"])) <= set(errors_seen[0].tolist())
    assert set(list(generated["agora_round"])) == {1}
    sources = [
        tuple(rte["dev"][i][c] for c in ("sentence1", "sentence2")) for i in list(generated["agora_source_index"])
    ]
    assert all(tuple(row[c] for c in ("sentence1", "sentence2")) != src for row, src in zip(generated, sources))
    # labels and confidences are the teacher's own predictions on the new texts
    reference = AgoraTeacher(teacher, LABELS, tokenizer, max_length=32)(
        list(zip(list(generated["sentence1"]), list(generated["sentence2"])))
    )
    assert list(generated["label"]) == reference.labels.tolist()
    np.testing.assert_allclose(list(generated["agora_teacher_confidence"]), reference.confidence.numpy(), rtol=1e-5)
    agree = np.mean(
        np.equal(list(generated["label"]), [rte["dev"][i]["label"] for i in list(generated["agora_source_index"])])
    )
    assert history[0].teacher_agreement == pytest.approx(agree)
    # the original data is untouched, and the final training set is original + generated
    assert rte["train"]._fingerprint == original_fingerprint
    assert list(trainer.agora_train_dataset["sentence1"]) == list(rte["train"]["sentence1"]) + list(
        generated["sentence1"]
    )
    logged = [log for log in trainer.state.log_history if "agora/dev_errors" in log]
    assert logged and logged[-1]["agora/dev_errors"] == history[-1].dev_errors
    trainer.plot_agora_history(tmp_path / "history.png")
    assert (tmp_path / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _predictions_wrong_on(dataset, wrong: np.ndarray) -> np.ndarray:
    """Binary predictions that match the labels except on the rows `wrong`."""
    predicted = np.asarray(dataset["label"]).copy()
    predicted[wrong] = 1 - predicted[wrong]
    return predicted


def test_replay_restarts_from_the_best_weights(tmp_path, rte, tokenizer):
    recorder = _RecordRounds()
    trainer = AgoraTrainer(
        model=tiny_classifier(0),
        args=agora_args(tmp_path, agora_rounds=3, agora_replay=True, agora_selection_tolerance=0),
        train_dataset=rte["train"].select(range(16)),
        agora_dev_dataset=rte["dev"],
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
        callbacks=[recorder],
    )
    scripted = iter([np.arange(3), np.arange(6), np.arange(5)])  # round 2 is worse than round 1
    best = {}

    def evaluate(dataset):
        if len(recorder.starts) == 1:
            best.update({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        wrong = next(scripted)
        return 1 - len(wrong) / len(dataset), _predictions_wrong_on(dataset, wrong), wrong

    trainer._agora_score = evaluate
    trainer.train()
    assert [r.replayed for r in trainer.agora_history] == [False, True, False]
    assert all(torch.equal(recorder.starts[2][k], v) for k, v in best.items())  # round 3 starts from round 1's end
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in best.items())  # and the run ends there
    assert set(list(trainer.agora_generated["agora_source_index"])) <= {
        0,
        1,
        2,
    }  # replayed round samples best's errors


def test_resume_mid_round_restores_expanded_set_and_round(tmp_path, rte, tokenizer):
    kwargs = dict(agora_rounds=2, epochs_per_round=2, save_strategy="epoch", agora_selection_tolerance=0)
    first = AgoraTrainer(
        model=tiny_classifier(0),
        args=agora_args(tmp_path, **kwargs),
        train_dataset=rte["train"],
        agora_dev_dataset=rte["dev"],
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
    )
    first.train()
    round_two = tmp_path / "out" / "agora-round-2"
    checkpoints = sorted(round_two.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    mid = checkpoints[0]  # after epoch 1 of round 2
    state = json.loads((mid / "agora_state.json").read_text())
    assert state["round"] == 2 and len(state["history"]) == 1

    for checkpoint in checkpoints[1:]:  # as if the run had stopped in the middle of round 2
        for path in sorted(checkpoint.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        checkpoint.rmdir()
    resumed = AgoraTrainer(
        model=tiny_classifier(5),
        args=agora_args(tmp_path, **kwargs),
        train_dataset=rte["train"],
        agora_dev_dataset=rte["dev"],
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
    )
    resumed.train(resume_from_checkpoint=True)
    assert resumed.agora_generated.to_dict() == first.agora_generated.to_dict()
    assert [r.round for r in resumed.agora_history] == [1, 2]
    assert resumed.agora_history[0] == first.agora_history[0]
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_soft_label_loss_adds_the_distillation_term(tmp_path, rte, tokenizer):
    args = agora_args(tmp_path, soft_labels=True, distill_alpha=0.3, distill_temperature=2.0)
    trainer = AgoraTrainer(
        model=tiny_classifier(0),
        args=args,
        train_dataset=rte["train"],
        agora_dev_dataset=rte["dev"],
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
    )
    rows = [dict(r) for r in trainer.agora_train_dataset.select(range(4))]
    rows[1]["agora_teacher_probs"], rows[3]["agora_teacher_probs"] = [0.9, 0.1], [0.2, 0.8]
    batch = trainer.data_collator(rows)
    model = trainer.model.eval()
    loss = trainer.compute_loss(model, dict(batch))
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    ).logits
    ce = torch.nn.functional.cross_entropy(logits, batch["labels"])
    target = torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log().div(2.0).softmax(-1)
    student = logits[[1, 3]].div(2.0).log_softmax(-1)
    kl = (target * (target.log() - student)).sum() / 4
    torch.testing.assert_close(loss, ce + 0.3 * 4.0 * kl)


def test_distill_train_rows_puts_the_teachers_probabilities_on_every_original_row(tmp_path, rte, tokenizer):
    with pytest.raises(ValueError, match="soft_labels=True"):
        agora_args(tmp_path, distill_train_rows=True)
    teacher = tiny_classifier(1).eval()
    trainer = AgoraTrainer(
        model=tiny_classifier(0),
        args=agora_args(tmp_path, agora_rounds=1, soft_labels=True, distill_train_rows=True),
        train_dataset=rte["train"],
        agora_dev_dataset=rte["dev"],
        teacher=teacher,
        processing_class=tokenizer,
    )
    trainer.train()
    original = trainer.agora_train_dataset.select(range(len(rte["train"])))
    assert original["sentence1"] == rte["train"]["sentence1"]
    with torch.no_grad():  # the teacher's softmax, row by row, unbatched and unpadded
        expected = [
            teacher(**tokenizer(a, b, truncation=True, max_length=32, return_tensors="pt")).logits.softmax(-1)[0]
            for a, b in zip(rte["train"]["sentence1"], rte["train"]["sentence2"])
        ]
    torch.testing.assert_close(torch.tensor(original["agora_teacher_probs"]), torch.stack(expected), atol=1e-5, rtol=0)
    batch = trainer.data_collator([dict(r) for r in original.select(range(4))])
    assert batch["teacher_mask"].all()  # so the distillation term covers the original rows


def test_lora_student(tmp_path, rte, tokenizer):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        tiny_classifier(0), peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"])
    )
    frozen = {k: v.clone() for k, v in model.named_parameters() if not v.requires_grad}
    trainer = AgoraTrainer(
        model=model,
        args=agora_args(tmp_path),
        train_dataset=rte["train"],
        agora_dev_dataset=rte["dev"],
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
    )
    trainer.train()
    assert len(trainer.agora_history) == 2 and len(trainer.agora_generated) > 0
    assert all(torch.equal(v, dict(model.named_parameters())[k]) for k, v in frozen.items())


def test_bort_student_with_a_bert_teacher(tmp_path, rte, tokenizer):
    from hf_bort import BortConfig, BortForSequenceClassification

    torch.manual_seed(0)
    config = BortConfig(
        vocab_size=30522,
        **TINY_DIMS,
        label2id=LABELS,
        id2label={v: k for k, v in LABELS.items()},
    )
    trainer = AgoraTrainer(
        model=BortForSequenceClassification(config),
        args=agora_args(tmp_path),
        train_dataset=rte["train"].select(range(16)),
        agora_dev_dataset=rte["dev"],
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
    )
    assert "token_type_ids" not in trainer.data_collator([dict(rte["dev"][0])])  # Bort has no token types
    trainer.train()
    assert len(trainer.agora_generated) > 0 and len(trainer.agora_history) == 2


# ----- bad input -----


def test_bad_input_gives_clear_errors(tmp_path, rte, tokenizer):
    args = agora_args(tmp_path)
    common = dict(args=args, teacher=tiny_classifier(1), processing_class=tokenizer)
    with pytest.raises(ValueError, match="agora_dev_dataset"):
        AgoraTrainer(model=tiny_classifier(0), train_dataset=rte["train"], agora_dev_dataset=None, **common)
    with pytest.raises(ValueError, match="non-empty agora_dev_dataset"):
        AgoraTrainer(
            model=tiny_classifier(0), train_dataset=rte["train"], agora_dev_dataset=rte["dev"].select([]), **common
        )
    with pytest.raises(TypeError, match="sequence-classification"):
        AgoraTrainer(
            model=BertModel(tiny_classifier(0).config),
            train_dataset=rte["train"],
            agora_dev_dataset=rte["dev"],
            **common,
        )
    with pytest.raises(ValueError, match="'premise' not found"):
        AgoraTrainer(
            model=tiny_classifier(0),
            train_dataset=rte["train"],
            agora_dev_dataset=rte["dev"],
            **(common | {"args": agora_args(tmp_path, agora_text_columns=["premise", "hypothesis"])}),
        )
    with pytest.raises(ValueError, match="label2id"):
        AgoraTrainer(
            model=tiny_classifier(0),
            train_dataset=rte["train"],
            agora_dev_dataset=rte["dev"],
            **(common | {"teacher": tiny_classifier(1, {"no": 0, "yes": 1})}),
        )
    with pytest.raises(ValueError, match="remove_unused_columns"):
        agora_args(tmp_path, remove_unused_columns=True)
    silent = AgoraTrainer(
        model=tiny_classifier(0),
        train_dataset=rte["train"].select(range(8)),
        agora_dev_dataset=rte["dev"],
        sampler=lambda text, n: [],
        **common,
    )
    with pytest.raises(RuntimeError, match="produced no new example"):
        silent.train()


# ----- several processes -----

_DISTRIBUTED_SCRIPT = """
import hashlib, json, os, sys
import torch
from accelerate import PartialState
sys.path.insert(0, os.getcwd())
from tests.test_agora import LABELS, agora_args, tiny_classifier
from transformers import AutoTokenizer
from hf_bort.agora import AgoraTrainer, carve_dev_split
from hf_bort.glue import load_glue
from pathlib import Path
from tests.conftest import GLUE_DIR, minilm_dir
torch.set_num_threads(1)
out = Path(sys.argv[1])
split = carve_dev_split(load_glue("rte", GLUE_DIR, ("train",))["train"].select(range(40)), 0.25, seed=0)
trainer = AgoraTrainer(model=tiny_classifier(0),
    args=agora_args(out, per_device_train_batch_size=4, agora_hyperparameter_space=sys.argv[2] or None),
    train_dataset=split["train"], agora_dev_dataset=split["dev"], teacher=tiny_classifier(1),
    processing_class=AutoTokenizer.from_pretrained(minilm_dir()))
trainer.train()
rows = json.dumps(trainer.agora_train_dataset.to_dict(), sort_keys=True)
state = PartialState()
(out / f"rank{state.process_index}.json").write_text(json.dumps({
    "num_processes": state.num_processes, "rows": len(trainer.agora_train_dataset),
    "hash": hashlib.sha256(rows.encode()).hexdigest(), "steps": trainer.state.global_step,
    "settings": [[s["setting"] for s in r.settings] for r in trainer.agora_history],
    "weights": sum(float(v.double().sum()) for v in trainer.model.state_dict().values())}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("theta", ["", '[{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]'])
def test_two_processes_train_on_the_same_expanded_set(tmp_path, glue_dir, tokenizer, theta):
    script = tmp_path / "agora_ddp.py"
    script.write_text(_DISTRIBUTED_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).parents[1]))
    subprocess.run(
        [*two_process_launcher(), str(script), str(tmp_path), theta],
        check=True,
        env=env,
        cwd=Path(__file__).parents[1],
        timeout=300,
    )
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]
    assert [r["num_processes"] for r in ranks] == [2, 2]
    assert ranks[0]["hash"] == ranks[1]["hash"] and ranks[0]["rows"] > 30
    # every setting is trained data-parallel by both processes: the same pruning and the same final model
    assert ranks[0]["settings"] == ranks[1]["settings"]
    assert [len(r) for r in ranks[0]["settings"]] == ([2, 1] if theta else [1, 1])
    assert ranks[0]["weights"] == ranks[1]["weights"]
