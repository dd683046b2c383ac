"""Agora killed mid-run (SIGINT, SIGKILL; round 1 included) resumes to exactly the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]

# Trains a tiny Agora run with a checkpoint every step. With KILL="SIGNAL:ROUND:SETTING:STEP[:early]" (SETTING "-"
# for a one-setting run, "*" for any setting) it sends
# itself SIGNAL right after that checkpoint is saved (with ":early", before the Agora state is written into it, as if
# cut short while saving). With RESUME=1 it resumes from the newest complete checkpoint. It writes the result.
_SCRIPT = r"""
import hashlib, json, os, signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal gives it, even when started in the background
import torch
sys.path.insert(0, os.getcwd())
from transformers import AutoTokenizer, TrainerCallback
from hf_bort.agora import AgoraTrainer, carve_dev_split
from hf_bort.glue import load_glue
from tests.conftest import GLUE_DIR, minilm_dir
from tests.test_agora import agora_args, tiny_classifier

torch.set_num_threads(1)
out, theta = sys.argv[1], sys.argv[2] or None
kill, resume = os.environ.get("KILL"), os.environ.get("RESUME") == "1"
split = carve_dev_split(load_glue("rte", GLUE_DIR, ("train",))["train"].select(range(40)), 0.25, seed=0)

class Killer(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        name, round_index, setting, step = kill.split(":")[:4]
        folder = args.output_dir.replace(os.sep, "/")
        here = f"agora-round-{round_index}" + {"-": "", "*": "/setting-"}.get(setting, f"/setting-{setting}")
        if here in folder and state.global_step == int(step):
            os.kill(os.getpid(), getattr(signal, name))

early = bool(kill) and kill.endswith(":early")
trainer = AgoraTrainer(
    model=tiny_classifier(0),
    args=agora_args(Path(out), agora_rounds=2, save_strategy="steps", save_steps=1, per_device_train_batch_size=8,
                    agora_hyperparameter_space=theta),
    train_dataset=split["train"].select(range(16)), agora_dev_dataset=split["dev"], teacher=tiny_classifier(1),
    processing_class=AutoTokenizer.from_pretrained(minilm_dir()),
    callbacks=[Killer()] if early else None,
)
if kill and not early:
    trainer.add_callback(Killer())  # runs after the Agora state callback: the checkpoint is complete
trainer.train(resume_from_checkpoint=True if resume else None)
rows = json.dumps(trainer.agora_generated.to_dict(), sort_keys=True)
(Path(out) / "result.json").write_text(json.dumps({
    "generated_sha256": hashlib.sha256(rows.encode()).hexdigest(),
    "generated": len(trainer.agora_generated),
    "history": [r.to_dict() for r in trainer.agora_history],
    "weights": {k: v.flatten().tolist() for k, v in trainer.model.state_dict().items()},
}))
"""


def _run(tmp_path: Path, out: Path, theta: str, kill: str | None = None, resume: bool = False):
    script = tmp_path / "agora_run.py"
    script.write_text(_SCRIPT)
    env = dict(
        os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), RESUME="1" if resume else "0"
    )
    env.pop("KILL", None)
    if kill:
        env["KILL"] = kill
    return subprocess.run(
        [sys.executable, str(script), str(out), theta], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


THETA = '[{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]'


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The result of an uninterrupted run per Θ, computed once when first asked for."""
    results = {}

    def get(name: str) -> dict:
        if name not in results:
            tmp = tmp_path_factory.mktemp(f"agora_full_{name}")
            done = _run(tmp, tmp / "out", THETA if name == "theta" else "")
            assert done.returncode == 0, done.stderr[-3000:]
            results[name] = json.loads((tmp / "out" / "result.json").read_text())
        return results[name]

    return get


def _assert_same(resumed: dict, full: dict) -> None:
    assert resumed["generated_sha256"] == full["generated_sha256"] and resumed["generated"] == full["generated"]
    assert resumed["history"] == full["history"]
    for key, values in full["weights"].items():
        assert resumed["weights"][key] == pytest.approx(values, abs=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize(
    "theta_name, kill",
    [
        ("theta", "SIGINT:1:0:1"),  # round 1, first setting, mid-training: nothing generated yet
        ("theta", "SIGKILL:1:1:1"),  # round 1, second setting, mid-training
        ("theta", "SIGKILL:2:*:2"),  # round 2 (the one setting kept), with generated rows
        ("one", "SIGKILL:1:-:2:early"),  # cut while saving: the newest checkpoint has no Agora state
    ],
)
def test_agora_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, theta_name, kill):
    theta = THETA if theta_name == "theta" else ""
    out = tmp_path / "out"
    killed = _run(tmp_path, out, theta, kill=kill)
    assert killed.returncode == -getattr(signal, kill.split(":")[0]), killed.stderr[-3000:]
    assert not (out / "result.json").exists()
    resumed = _run(tmp_path, out, theta, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if kill.endswith(":early"):
        assert "Skipping Agora checkpoint" in resumed.stderr and "agora_state.json" in resumed.stderr
    _assert_same(json.loads((out / "result.json").read_text()), uninterrupted(theta_name))


def test_resume_errors_name_the_problem(tmp_path):
    from hf_bort.agora import find_agora_checkpoint

    with pytest.raises(ValueError, match="No Agora checkpoint"):
        find_agora_checkpoint(True, str(tmp_path))
    folder = tmp_path / "agora-round-1" / "checkpoint-3"
    folder.mkdir(parents=True)
    (folder / "agora_state.json").write_text(json.dumps({"weights": ["best"]}))
    (folder / "trainer_state.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"lacks agora_generated.json, agora_best_weights.safetensors"):
        find_agora_checkpoint(str(folder), str(tmp_path))
    with pytest.raises(ValueError, match="Every Agora checkpoint .* is incomplete"):
        find_agora_checkpoint(True, str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        find_agora_checkpoint(str(tmp_path / "nowhere"), str(tmp_path))


def _complete_checkpoint(folder: Path, round_index: int, position: int, step: int) -> Path:
    """The files `find_agora_checkpoint` reads in a complete checkpoint, recording where it stands in the run."""
    folder.mkdir(parents=True)
    (folder / "agora_state.json").write_text(json.dumps({"round": round_index, "position": position, "weights": []}))
    (folder / "agora_generated.json").write_text("{}")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_resume_picks_the_checkpoint_furthest_along_whatever_the_modification_times(tmp_path):
    """Round 2 ranked setting 1 before setting 0, so setting-0's checkpoints are the newest; a touched old checkpoint
    (a copy, a backup tool) must not send the run back to round 1."""
    from hf_bort.agora import find_agora_checkpoint

    old = _complete_checkpoint(tmp_path / "agora-round-1" / "setting-1" / "checkpoint-5", 1, 1, 5)
    _complete_checkpoint(tmp_path / "agora-round-2" / "setting-1" / "checkpoint-7", 2, 0, 7)
    newest = _complete_checkpoint(tmp_path / "agora-round-2" / "setting-0" / "checkpoint-3", 2, 1, 3)
    cut = tmp_path / "agora-round-2" / "setting-0" / "checkpoint-4"
    cut.mkdir()  # cut short while saving: no Agora state, skipped
    later = newest.stat().st_mtime_ns + 10**12
    os.utime(old, ns=(later, later))  # the round-1 checkpoint is touched: now the most recently modified folder
    assert find_agora_checkpoint(True, str(tmp_path)) == str(newest)


# recipes/glue.py --agora, killed with SIGKILL right after a complete checkpoint of round KILL_ROUND, step KILL_STEP
# (KILL unset: runs to the end). The recipe runs as a user runs it, with the killer added to its trainer.
_RECIPE_SCRIPT = r"""
import importlib.util, os, signal, sys
sys.path.insert(0, os.getcwd())
from transformers import TrainerCallback
spec = importlib.util.spec_from_file_location("glue_recipe", os.path.join("recipes", "glue.py"))
recipe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(recipe)
kill = os.environ.get("KILL")

class Killer(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        round_index, step = kill.split(":")
        if f"agora-round-{round_index}" in args.output_dir and state.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

build_trainer = recipe.build_trainer

def build_with_killer(*args, **kwargs):
    trainer, prepare = build_trainer(*args, **kwargs)
    trainer.add_callback(Killer())  # after Agora's state callback: the checkpoint is complete
    return trainer, prepare

if kill:
    recipe.build_trainer = build_with_killer
raise SystemExit(recipe.run_main(recipe.main, "glue.py"))
"""


@pytest.fixture(scope="module")
def recipe_models(tmp_path_factory):
    """A tiny BERT to fine-tune and a tiny RTE classifier as teacher, saved with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertModel

    from tests.conftest import minilm_dir
    from tests.test_agora import tiny_classifier

    root = tmp_path_factory.mktemp("recipe_models")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    tiny_classifier(0).save_pretrained(root / "teacher")
    tokenizer.save_pretrained(root / "teacher")
    BertModel(tiny_classifier(1).config).save_pretrained(root / "student")
    tokenizer.save_pretrained(root / "student")
    return root


def _run_recipe(tmp_path: Path, models: Path, out: Path, *extra: str, kill: str | None = None):
    from tests.conftest import GLUE_DIR

    script = tmp_path / "glue_run.py"
    script.write_text(_RECIPE_SCRIPT)
    argv = [
        "--model_name_or_path", str(models / "student"), "--task_name", "rte", "--data_dir", str(GLUE_DIR),
        "--output_dir", str(out), "--max_train_samples", "40", "--max_eval_samples", "16", "--max_seq_length", "32",
        "--agora", "--agora_teacher", str(models / "teacher"), "--agora_rounds", "2", "--agora_allow_weak_teacher",
        "--samples_per_error", "2", "--learning_rate", "1e-3", "--per_device_train_batch_size", "8",
        "--save_strategy", "steps", "--save_steps", "1", "--seed", "0", "--use_cpu", "true", "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("KILL", None)
    if kill:
        env["KILL"] = kill
    return subprocess.run(
        [sys.executable, str(script), *argv], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )


def _recipe_outcome(out: Path) -> dict:
    from safetensors.torch import load_file

    results = json.loads((out / "results.json").read_text())
    weights = load_file(str(out / "model.safetensors"))
    return {
        "results": {key: results[key] for key in ("metrics", "rows", "agora_rounds", "agora_history")},
        "weights": {name: tensor.flatten().tolist() for name, tensor in weights.items()},
    }


@pytest.mark.slow
def test_the_glue_recipe_resumes_an_agora_run_to_the_uninterrupted_result(tmp_path, recipe_models):
    """`--agora --resume_from_checkpoint True` continues Agora's own checkpoints (agora-round-N/), not a
    checkpoint-* of the output folder, and ends where the uninterrupted run ends."""
    full = _run_recipe(tmp_path, recipe_models, tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run_recipe(tmp_path, recipe_models, tmp_path / "out", kill="2:2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "out" / "results.json").exists()
    resumed = _run_recipe(tmp_path, recipe_models, tmp_path / "out", "--resume_from_checkpoint", "True")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Agora resumes from" in resumed.stderr and "agora-round-2" in resumed.stderr
    got, want = _recipe_outcome(tmp_path / "out"), _recipe_outcome(tmp_path / "full")
    assert got["results"] == want["results"]
    for name, values in want["weights"].items():
        assert got["weights"][name] == pytest.approx(values, abs=1e-6), name
