"""`AgoraState`: the run state as a versioned JSON file; a format-1 file (written before AgoraState) is read, anything
else this hf_bort cannot read is refused with what to do."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hf_bort.agora import AGORA_STATE_VERSION, AgoraRound, AgoraState, AgoraTrainer
from hf_bort.testing import offline_minilm_dir
from tests.test_agora import agora_args, tiny_classifier


# agora_state.json as hf_bort wrote it before AgoraState (format 1, no version key): saved by that code's AgoraTrainer
# (2 rounds, Θ of two learning rates, tests/test_agora.py's tiny models) while round 2 trained its one setting
FORMAT_1 = Path(__file__).parent / "data" / "agora_state_format1.json"


def test_the_state_round_trips_through_json(tmp_path):
    state = AgoraState(
        round=3,
        position=1,
        remaining=[2, 0],
        results=[{"setting": 2, "steps": 7, "dev_metric": 0.75, "dev_errors": 3, "selection_metric": 0.5}],
        round_best={"setting": 2, "steps": 7, "dev_metric": 0.75, "dev_errors": 3, "wrong": [1, 4, 6]},
        improved=True,
        best={"metric": 0.8, "round": 2, "setting": 0, "wrong": [3]},
        stale=1,
        total_steps=41,
        loss_sum=12.5,
        labels_spent=9,
        history=[
            AgoraRound(1, 30, 10, 4, 0.6, selection_metric=0.5, kept=5, labelled=6, teacher_agreement=0.8)
        ],  # numbers where the defaults are NaN, which equals nothing
        teacher_report={"metric": "accuracy", "score": 0.9, "student_comparison": {"teacher_better": True}},
        weights=["best", "start"],
        generated_rows=5,
        settings=[{"learning_rate": 1e-3}, {}, {"seed": 3}],
    )
    state.save_to_json(tmp_path / "state.json")
    loaded = AgoraState.load_from_json(tmp_path / "state.json")
    assert loaded == state and isinstance(loaded.history[0], AgoraRound)
    raw = json.loads((tmp_path / "state.json").read_text())
    assert raw["format_version"] == AGORA_STATE_VERSION == 2 and raw["history"][0]["labelled"] == 6
    assert not (tmp_path / "state.json.tmp").exists()
    assert AgoraState.fresh(3) == AgoraState(remaining=[0, 1, 2])


def test_a_format_1_state_written_by_the_old_trainer_is_read():
    raw = json.loads(FORMAT_1.read_text())
    assert "format_version" not in raw
    state = AgoraState.load_from_json(FORMAT_1)
    for key, value in raw.items():
        got = getattr(state, key)
        assert ([r.to_dict() for r in got] if key == "history" else got) == (
            [{**AgoraRound(**r).to_dict()} for r in value] if key == "history" else value
        ), key
    # fields format 1 did not have: the labels spent are the rows it labelled; the gate's report is re-measured
    assert state.labels_spent == sum(r["kept"] + r["low_confidence"] for r in raw["history"]) > 0
    assert state.teacher_report == {} and state.format_version == AGORA_STATE_VERSION


def test_agora_resumes_a_format_1_checkpoint_to_the_uninterrupted_result(tmp_path, rte_small):
    """A checkpoint whose state file is in format 1 resumes to what the uninterrupted run reaches."""

    def trainer(out):
        return AgoraTrainer(
            model=tiny_classifier(0),
            args=agora_args(
                out,
                agora_rounds=2,
                save_strategy="steps",
                save_steps=1,
                agora_hyperparameter_space='[{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]',
            ),
            train_dataset=rte_small["train"],
            agora_dev_dataset=rte_small["dev"],
            teacher=tiny_classifier(1),
            processing_class=AutoTokenizer.from_pretrained(offline_minilm_dir()),
        )

    full = trainer(tmp_path)
    full.train()
    # round 2's first checkpoint: the rest of round 2 trains again, and the run ends on round 2's model (the default
    # rule), so the resumed training itself is compared (its shuffle order is seeded per round)
    checkpoints = (tmp_path / "out" / "agora-round-2").glob("*/checkpoint-*")
    checkpoint = min(checkpoints, key=lambda p: int(p.name.split("-")[1]))
    state_file = checkpoint / "agora_state.json"
    new = json.loads(state_file.read_text())
    old_keys = set(json.loads(FORMAT_1.read_text()))
    state_file.write_text(json.dumps({key: value for key, value in new.items() if key in old_keys}))
    assert set(json.loads(state_file.read_text())) == old_keys  # exactly what the old trainer wrote
    resumed = trainer(tmp_path)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.agora_generated.to_dict() == full.agora_generated.to_dict()
    assert [r.to_dict() for r in resumed.agora_history] == [r.to_dict() for r in full.agora_history]
    assert resumed.agora_state.best["round"] == full.agora_state.best["round"] == 2
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value)


@pytest.fixture(scope="module")
def rte_small():
    from hf_bort.agora import carve_dev_split
    from hf_bort.glue import load_glue
    from tests.conftest import GLUE_DIR

    split = carve_dev_split(load_glue("rte", GLUE_DIR, ("train",))["train"].select(range(40)), 0.25, seed=0)
    return {"train": split["train"].select(range(16)), "dev": split["dev"]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 3}, r"written by a newer hf_bort \(Agora state format 3; this one reads formats 1 to 2\)"),
        ({"format_version": "2"}, r"format_version '2', which no hf_bort writes"),
        ({"format_version": None, "remaining": None}, r"format 1 that lacks \['remaining'\]"),
        ({"surprise": 1}, r"format 2 that has unknown keys \['surprise'\]"),
    ],
    ids=["a newer format", "a version that is not a number", "format 1 without a key", "an unknown key"],
)
def test_a_state_file_this_hf_bort_cannot_read_is_refused(tmp_path, change, message):
    state = AgoraState.fresh(2).to_dict()
    for key, value in change.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    path = tmp_path / "agora_state.json"
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=rf"{path}.*{message}.*(upgrade hf_bort|another checkpoint|not an Agora)"):
        AgoraState.load_from_json(path)


def test_a_damaged_state_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "agora_state.json"
    path.write_text('{"round": 1, "posi')
    with pytest.raises(ValueError, match=rf"{path} is not valid JSON: the checkpoint is damaged"):
        AgoraState.load_from_json(path)
    state = dataclasses.replace(AgoraState.fresh(1)).to_dict()
    state["history"] = [{"round": 1, "train_size": 1, "dev_size": 1, "dev_errors": 0, "dev_metric": 1.0, "x": 0}]
    path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"a round of its history has unknown keys \['x'\]"):
        AgoraState.load_from_json(path)
