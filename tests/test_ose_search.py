"""The OSE FPTAS end to end on a tiny parent and real WikiText, plus its building blocks and failure modes."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
import transformers as tr

from hf_bort.glue import load_glue
from hf_bort.ose import (
    Architecture,
    LatencyModel,
    OSEConfig,
    OSEResult,
    OSESearch,
    SearchSpace,
    read_text_lines,
    w_coefficient,
)
from tests.conftest import TINY_DIMS, two_process_launcher


REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(vocab_size=30522, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture
def parent():
    torch.manual_seed(0)
    return tr.BertModel(tr.BertConfig(**CONFIG)).eval()


@pytest.fixture
def texts(wikitext_dir):
    return read_text_lines(wikitext_dir / "wiki.valid.raw")[:32]


def _search(parent, tokenizer, texts, **kwargs):
    space = kwargs.pop("space", SearchSpace.from_config(parent.config, step=16))
    data = {k: kwargs.pop(k) for k in ("latency_model", "eval_dataset") if k in kwargs}
    defaults = dict(epsilon=0.5, interval=2, seq_len=24, batch_size=4, step_scale=2.0, show_progress=False)
    config = OSEConfig(**{**defaults, **kwargs})
    return OSESearch(parent, config, space=space, train_dataset=texts, tokenizer=tokenizer, **data)


def test_w_coefficient_definition():
    top = {"params": 100.0, "inference_cost": 1000.0, "error": 2.0}
    # Ratios 0.5, 0.1 and 0.15: W is the largest, weighted.
    args = (np.array([50.0, 20.0]), np.array([100.0, 800.0]), np.array([0.3, 1.0]), top)
    assert w_coefficient(*args).tolist() == pytest.approx([0.5, 0.8])
    assert w_coefficient(*args, weights=(1, 1, 4)).tolist() == pytest.approx([0.6, 2.0])


def test_search_end_to_end(parent, tokenizer, texts, tmp_path):
    search = _search(parent, tokenizer, texts, eval_dataset=texts[-8:], output_dir=tmp_path / "run")
    assert search.steps == 3  # ceil(2 / (0.5 * sqrt(2))) = ceil(2.83)
    result = search.run()
    guarantee = result.guarantee  # every candidate kept by the ε-cover was evaluated or ruled out by the bounds
    assert guarantee["space"] == len(search.space) and guarantee["open"] == 0
    assert guarantee["evaluated"] == len(result.records) <= guarantee["kept"] < len(search.space)
    assert len((tmp_path / "run" / "candidates-0.jsonl").read_text().splitlines()) == len(result.records)
    top = result.max_point
    for rec in result.records:  # W from its definition, with the numbers of T written out
        assert rec.w == pytest.approx(
            max(rec.params / top["params"], rec.inference_cost / top["inference_cost"], rec.error)
        )
    # A Chebyshev minimiser is Pareto-optimal: the best point is on the front, and no front point has a lower W.
    assert result.best in result.front
    assert result.record(result.best).w <= min(result.record(a).w for a in result.front)
    for rec in result.records:
        assert rec.steps == search.steps and rec.error == rec.eval_error and rec.in_sample_error is not None
        assert 0 < rec.error < math.inf
        assert rec.params == sum(
            x.numel() for x in tr.AutoModel.from_config(result.to_config(rec.architecture)).parameters()
        )

    result.save(tmp_path / "result.json")
    loaded = OSEResult.load(tmp_path / "result.json")
    loaded.save(tmp_path / "again.json")
    assert (tmp_path / "result.json").read_bytes() == (tmp_path / "again.json").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        loaded.save(tmp_path / "result.json")
    assert str(result.best.hidden) in loaded.table() and ">" in loaded.table()
    png = loaded.plot(tmp_path / "front.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_candidates_start_from_extracted_weights(parent, tokenizer, texts):
    """The parent's own architecture starts as an exact copy of the teacher, so its error is ~0; a half-width one is not."""
    base = SearchSpace.from_config(parent.config, step=8)
    space = SearchSpace.from_architectures(base, [Architecture(2, 4, 32, 37), Architecture(2, 4, 16, 37)])
    result = _search(parent, tokenizer, texts, space=space, epsilon=1.0).run()
    assert result.record(Architecture(2, 4, 32, 37)).error < 0.01
    assert result.record(Architecture(2, 4, 16, 37)).error > 0.1


def test_resume_after_a_crash_loses_no_finished_candidate(parent, tokenizer, texts, tmp_path, monkeypatch):
    clean = _search(parent, tokenizer, texts, epsilon=1.0).run()
    assert len(clean.records) >= 4
    evaluate = OSESearch._evaluate
    calls = []

    def crash_on_third(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(OSESearch, "_evaluate", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _search(parent, tokenizer, texts, epsilon=1.0, output_dir=tmp_path).run()
    assert len((tmp_path / "candidates-0.jsonl").read_text().splitlines()) == 2

    calls.clear()
    monkeypatch.setattr(OSESearch, "_evaluate", lambda self, *a, **k: calls.append(a[0]) or evaluate(self, *a, **k))
    resumed = _search(parent, tokenizer, texts, epsilon=1.0, output_dir=tmp_path).run()
    assert len(calls) == len(clean.records) - 2
    assert [(r.architecture, r.error) for r in resumed.records] == [(r.architecture, r.error) for r in clean.records]
    with pytest.raises(ValueError, match="different settings.*epsilon"):
        _search(parent, tokenizer, texts, output_dir=tmp_path, epsilon=0.5).run()


def test_task_objective_on_glue(parent, tokenizer, glue_dir):
    train = load_glue("sst2", glue_dir, splits=("validation",))["validation"].select(range(32))
    base = SearchSpace.from_config(parent.config, step=8)
    space = SearchSpace.from_architectures(base, [Architecture(1, 2, 16, 16), Architecture(2, 4, 32, 37)])
    search = _search(parent, tokenizer, train, space=space, objective="task", epsilon=1.0)
    result = search.run()
    fit, held = search._split()
    assert len(held["labels"]) == 6 and len(fit["labels"]) == 26
    prior = torch.bincount(fit["labels"]).float() / len(fit["labels"])  # e(T): the label prior of the fitting rows
    assert result.max_point["reference_loss"] == pytest.approx(float(-(prior * prior.log()).sum()))
    reference = result.max_point["reference_loss"]
    for rec in result.records:  # in-sample ê is the cross-entropy relative to the label prior's entropy
        assert rec.raw_loss == pytest.approx(rec.in_sample_error * reference, rel=1e-5)
        assert 0.5 < rec.in_sample_error < 2 and 0 < rec.error < 2  # near the prior: not at 0, not diverged


def test_measured_latency_as_inference_cost(parent, tokenizer, texts):
    space = SearchSpace.from_config(parent.config, step=16)
    latency = LatencyModel.fit(space, n_samples=4, seq_len=24, repeats=1)
    result = _search(
        parent, tokenizer, texts, space=space, epsilon=1.0, inference_cost="latency", latency_model=latency
    ).run()
    predicted = dict(zip(space, latency.predict(space)))
    assert result.inference_cost_unit == "latency_ms"
    assert all(r.inference_cost == pytest.approx(predicted[r.architecture]) for r in result.records)


def test_bad_inputs_raise_clear_errors(parent, tokenizer, texts):
    for epsilon in (0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\]"):
            _search(parent, tokenizer, texts, epsilon=epsilon)
    with pytest.raises(ValueError, match=r"no text column.*\['idx', 'score'\].*text_column="):
        _search(parent, tokenizer, datasets.Dataset.from_dict({"idx": [1, 2], "score": [0.1, 0.2]}))
    with pytest.raises(ValueError, match="needs a 'label' column"):
        _search(parent, tokenizer, texts, objective="task")
    with pytest.raises(ValueError, match="tokenizer="):
        OSESearch(parent, train_dataset=texts)


def test_a_bad_parent_folder_is_one_sentence_naming_it(parent, tokenizer, texts, tmp_path):
    """OSESearch(path) names the folder instead of transformers' "Repo id must be in the form ..." or a bare
    SafetensorError."""
    with pytest.raises((FileNotFoundError, ValueError), match=r"OSE parent .*nowhere.*does not exist"):
        OSESearch(tmp_path / "nowhere", OSEConfig(), train_dataset=texts)
    parent.save_pretrained(tmp_path / "cut")
    tokenizer.save_pretrained(tmp_path / "cut")
    weights = tmp_path / "cut" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        OSESearch(tmp_path / "cut", OSEConfig(), train_dataset=texts)


@pytest.mark.slow
def test_two_processes_give_the_same_front_as_one(tmp_path, wikitext_dir, minilm_path):
    script = REPO_ROOT / "tests" / "scripts" / "ose_sharded_search.py"
    args = [str(wikitext_dir / "wiki.valid.raw"), str(minilm_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    subprocess.run(
        [*two_process_launcher(), str(script), str(tmp_path / "two.json"), *args], check=True, env=env, timeout=300
    )
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.json"), *args], check=True, env=env, timeout=300)
    two, one = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("two", "one"))
    assert two["num_processes"] == 2 and one["num_processes"] == 1
    assert two["front"] == one["front"] and two["best"] == one["best"]
    assert len(two["records"]) == len(one["records"]) >= 4
    for (arch_2, err_2, *costs_2), (arch_1, err_1, *costs_1) in zip(two["records"], one["records"]):
        assert arch_2 == arch_1 and costs_2 == costs_1
        assert err_2 == pytest.approx(err_1, rel=1e-5, abs=1e-7)


def test_cli_search_writes_result_plot_and_resumes(parent, tokenizer, wikitext_dir, tmp_path, capsys):
    from hf_bort.cli import main

    parent.save_pretrained(tmp_path / "parent")
    tokenizer.save_pretrained(tmp_path / "parent")
    argv = ["search", "--model", str(tmp_path / "parent"), "--train_file", str(wikitext_dir / "wiki.valid.raw")]
    argv += ["--epsilon", "1", "--interval", "2", "--seq_len", "16", "--batch_size", "4", "--step", "16"]
    argv += ["--max_texts", "32", "--output_dir", str(tmp_path / "run")]
    assert main(argv) == 0
    result = OSEResult.load(tmp_path / "run" / "result.json")
    assert str(result.best) in capsys.readouterr().out
    assert (tmp_path / "run" / "front.png").read_bytes()[:4] == b"\x89PNG"
    lines = (tmp_path / "run" / "candidates-0.jsonl").read_text()
    assert main(argv) == 0  # resumes: every candidate is already there, nothing is evaluated again
    assert (tmp_path / "run" / "candidates-0.jsonl").read_text() == lines


def test_step_budget_follows_epsilon_and_interval():
    """ceil(K / (ε·sqrt(s))) steps, at least s: tighter ε buys longer runs, a longer window needs fewer steps."""
    steps = {
        (eps, s): OSEConfig(epsilon=eps, interval=s, step_scale=30.0).steps
        for eps in (1.0, 0.5, 0.1)
        for s in (1, 4, 16)
    }
    assert steps == {
        (1.0, 1): 30, (1.0, 4): 15, (1.0, 16): 16,
        (0.5, 1): 60, (0.5, 4): 30, (0.5, 16): 16,
        (0.1, 1): 300, (0.1, 4): 150, (0.1, 16): 75,
    }  # fmt: skip
    assert OSEConfig(epsilon=0.1, interval=4, step_scale=30.0, max_steps=40).steps == 40


def test_training_batches_cycle_through_every_fitting_row(parent, tokenizer, texts):
    search = _search(parent, tokenizer, texts, step_scale=40.0, max_steps=None)
    fit, held = search._split()
    targets = search._prepare_targets()
    seen = {tuple(row.tolist()) for batch in targets.train for row in batch["input_ids"]}
    assert seen == {tuple(row.tolist()) for row in fit["input_ids"]}  # all 26 fitting rows, not the first few
    assert not seen & {tuple(row.tolist()) for row in held["input_ids"]}  # the 6 held-out rows are never trained on
    assert len(fit["input_ids"]) + len(held["input_ids"]) == len(texts) and len(held["input_ids"]) == 6


def test_w_and_the_front_use_the_held_out_error(parent, tokenizer, texts):
    """The projection and the short run only see the fitting rows, so the in-sample ê flatters every narrow candidate;
    W must rank by the held-out one. With weights (0, 0, 1), W is ê itself: W from the in-sample ê would fail."""
    base = SearchSpace.from_config(parent.config, step=8)
    archs = [Architecture(1, 4, 24, 8), Architecture(1, 1, 8, 8), Architecture(2, 2, 16, 37)]
    space = SearchSpace.from_architectures(base, archs)
    result = _search(parent, tokenizer, texts, space=space, epsilon=1.0, weights=[0.0, 0.0, 1.0]).run()
    for rec in result.records:
        assert rec.w == pytest.approx(rec.error) and rec.error == rec.eval_error
        assert rec.error > rec.in_sample_error + 0.02  # the held-out rows expose what the fitted parts memorised
    assert result.best == min(result.records, key=lambda r: r.error).architecture


def test_error_is_the_best_over_the_hyperparameter_space(parent, tokenizer, texts):
    archs = [Architecture(1, 2, 16, 16), Architecture(2, 4, 32, 37)]

    def estimate(space):
        search = _search(parent, tokenizer, texts, hyperparameter_space=space, step_scale=6.0)
        return {r.architecture: r for r in search.estimate(archs)}

    both = estimate([1e-5, {"learning_rate": 3e-2, "weight_decay": 0.01}])
    low, high = estimate([1e-5]), estimate([{"learning_rate": 3e-2, "weight_decay": 0.01}])
    for arch in archs:
        singles = {low[arch].error: low[arch].setting, high[arch].error: high[arch].setting}
        assert low[arch].error != high[arch].error
        assert both[arch].error == min(singles) and both[arch].setting == singles[min(singles)]
        assert both[arch].in_sample_error in (low[arch].in_sample_error, high[arch].in_sample_error)
    with pytest.raises(ValueError, match="unknown keys \\['momentum'\\]"):
        OSEConfig(hyperparameter_space=[{"learning_rate": 1e-4, "momentum": 0.9}])


def test_layer_wise_objective(parent, tokenizer, texts):
    """Every student layer matched to the parent's (hf_bort.distill.layer_map) through its own ridge map: the
    parent's own architecture is an exact copy with identity maps, so its ê is ~0; a 1-layer half-width one's is not."""
    base = SearchSpace.from_config(parent.config, step=8)
    archs = [Architecture(2, 4, 32, 37), Architecture(1, 2, 16, 37)]
    layers = _search(parent, tokenizer, texts, space=base, objective="distill_layers").estimate(archs)
    assert layers[0].error < 0.01 and layers[1].error > 0.1
    assert all(math.isfinite(r.error) for r in layers)


def test_task_distill_matches_a_fine_tuned_classifiers_predictions(tokenizer, glue_dir):
    """objective='task_distill': the candidate keeps the parent's classifier (extraction carries it over) and matches
    its label distribution. The parent's own architecture is an exact copy (ê ~ 0); a 1-layer one is not; each
    batch's reference is KL(parent || its mean distribution over the fitting rows), computed here by hand."""
    torch.manual_seed(0)
    parent = tr.BertForSequenceClassification(tr.BertConfig(**CONFIG, num_labels=2)).eval()
    rows = load_glue("sst2", glue_dir, splits=("validation",))["validation"].select(range(32))
    with pytest.raises(ValueError, match="predicts the same label distribution for every fitting row"):
        _search(parent, tokenizer, rows, objective="task_distill").run()  # random init: one answer for all rows
    encoded = tokenizer(list(rows["sentence"]), padding=True, truncation=True, max_length=24, return_tensors="pt")
    optimizer = torch.optim.Adam(parent.parameters(), lr=1e-3)
    for _ in range(30):  # fine-tuned on the rows: predictions that depend on the input
        loss = parent(**encoded, labels=torch.tensor(rows["label"])).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    parent.eval()
    base = SearchSpace.from_config(parent.config, step=8)
    space = SearchSpace.from_architectures(base, [Architecture(2, 4, 32, 37), Architecture(1, 2, 16, 16, 8)])
    search = _search(parent, tokenizer, rows, space=space, objective="task_distill", epsilon=1.0, importance="fisher")
    result = search.run()
    assert result.record(Architecture(2, 4, 32, 37)).error < 1e-4
    assert result.record(Architecture(1, 2, 16, 16, 8)).error > 0.01
    targets = search._prepare_targets()
    fit, _ = search._split()
    with torch.no_grad():
        mean = parent(input_ids=fit["input_ids"], attention_mask=fit["attention_mask"]).logits.softmax(-1).mean(0)
        batch = targets.eval[0]
        p = parent(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.softmax(-1)
    assert targets.eval_reference[0] == pytest.approx(float((p * (p / mean).log()).sum(-1).mean()), rel=1e-4)
    assert "labels" in targets.train[0]  # the fine-tuned parent's task loss ranks its weights (fisher)
    with pytest.raises(ValueError, match="task_distill.*no sequence-classification head.*AutoModelForSequence"):
        _search(tr.BertModel(tr.BertConfig(**CONFIG)), tokenizer, rows, objective="task_distill")
