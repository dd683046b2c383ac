"""`make demo QUICK=1` end to end on real data: every step real, every reported number re-derived."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_bort.glue import load_glue
from hf_bort.ose import Architecture
from hf_bort.ose.space import layer_sizes
from tests.conftest import GLUE_DIR, REPO_ROOT, WIKITEXT_DIR


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_reports_honest_numbers(tmp_path, minilm_path):
    out = tmp_path / "demo_output"
    command = [sys.executable, str(REPO_ROOT / "recipes" / "demo.py"), "--quick", "--output_dir", str(out),
               "--data_dir", str(GLUE_DIR), "--wikitext_dir", str(WIKITEXT_DIR)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Bort student" in result.stdout and "faster on this CPU" in result.stdout

    def refuse_nan(constant):
        raise AssertionError(f"results.json is not strict JSON: it holds {constant}")

    summary = json.loads((out / "results.json").read_text(), parse_constant=refuse_nan)
    # The student met the speed budget as measured at selection (1 thread, warm-up, median CPU time); the final
    # measurement is reported as measured (a busy machine moves timings, so it is checked for arithmetic only).
    chosen = Architecture(**summary["student"]["architecture"])
    chosen_key = str(chosen)
    at_selection = summary["ose"]["parent_latency_ms"] / summary["ose"]["candidate_latency_ms"][chosen_key]
    assert summary["speedup_at_selection"] == pytest.approx(at_selection, abs=0.01)
    assert at_selection >= summary["ose"]["min_speedup"] == 3.0
    assert summary["speedup"] == pytest.approx(
        summary["parent"]["cpu_latency_ms"] / summary["student"]["cpu_latency_ms"], abs=0.01
    )
    assert summary["share_of_parent"] == pytest.approx(
        summary["student"]["accuracy"] / summary["parent"]["accuracy"], abs=1e-3
    )
    # The delivered model is the architecture OSE evaluated, every layer's heads and FFN width included.
    config = AutoConfig.from_pretrained(out / "model")
    assert (config.num_hidden_layers, config.hidden_size, config.head_dim) == (
        chosen.depth, chosen.hidden, chosen.head_dim or chosen.hidden // chosen.heads
    )  # fmt: skip
    assert layer_sizes(config) == summary["student"]["layers"]
    assert sum(summary["student"]["layers"]["heads"]) == chosen.depth * chosen.heads
    assert sum(summary["student"]["layers"]["intermediate"]) == chosen.depth * chosen.intermediate
    guarantee = summary["ose"]["guarantee"]
    assert guarantee["evaluated"] == summary["ose"]["evaluated"] <= 10 and guarantee["factor"] >= 2.0  # ε = 1
    card = (out / "MODEL_CARD.md").read_text()
    assert card == (out / "model" / "README.md").read_text()
    assert "sentence-transformers/all-MiniLM-L6-v2" in card and "nyu-mll/glue" not in card
    assert "local GLUE files" in card and "none (architecture not extracted with OSE)" not in card
    assert f"{chosen} of MiniLM" in card and f"within {guarantee['factor']:.2f}x of the grid's best" in card
    assert f"{100 * summary['share_of_parent']:.1f}%" in card and f"{summary['speedup']:.2f}x faster" in card
    for name in ("pareto.png", "agora_rounds.png", "MODEL_CARD.md", "ose_result.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["ose"]["evaluated"] >= 4
    assert summary["student"]["parameters"] < summary["parent"]["parameters"]
    assert summary["distillation"]["trained"]["loss"] < summary["distillation"]["untrained"]["loss"]
    assert len(summary["agora_history"]) >= 1

    # The saved student loads with plain Auto classes, and its reported accuracy on the official dev set
    # is what the saved weights really score.
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    assert type(model).__name__ == "BortForSequenceClassification"
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    max_length = json.loads((out / "model" / "results.json").read_text())["hyperparameters"]["max_length"]
    dev = load_glue("sst2", GLUE_DIR, splits=("validation",))["validation"]
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(dev), 128):
            batch = tokenizer(list(dev["sentence"][start : start + 128]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")  # fmt: skip
            batch.pop("token_type_ids", None)
            predictions.append(model(**batch).logits.argmax(-1).numpy())
    accuracy = float(np.mean(np.concatenate(predictions) == np.asarray(list(dev["label"]))))
    assert accuracy == pytest.approx(summary["student"]["accuracy"], abs=2e-3)
    assert summary["scored_on"].startswith("the official GLUE dev set")
