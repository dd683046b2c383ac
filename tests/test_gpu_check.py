"""`make gpu-check` (benchmarks/gpu_check.py): its code path on the CPU, as CI has no GPU, and its refusal without
CUDA. Each run is a subprocess: the script sets Accelerate's process-wide state, which OSE tests in this session read."""

import json
import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def _run(*args, env=None):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_gpu_check_runs_its_whole_path_on_the_cpu(tmp_path, wikitext_dir):
    output = tmp_path / "gpu_check.json"
    run = _run(
        "--device", "cpu", "--quick", "--wikitext", str(wikitext_dir / "wiki.valid.raw"), "--output", str(output)
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["passed"] and report["quick"]
    assert [m["model"] for m in report["model"]] == ["bort", "bort, heterogeneous"]
    for model in report["model"]:  # SDPA against eager attention, bf16 against fp32, forward and backward
        assert model["fp32 sdpa vs eager, logits max |diff|"] <= 1e-4
        assert model["fp32 sdpa vs eager, gradients relative diff"] <= 1e-3
        assert model["bf16 vs fp32, logits relative diff"] <= 5e-2
        assert model["bf16 vs fp32, gradient cosine (min)"] >= 0.9
    assert report["model"][1]["parameters"] < report["model"][0]["parameters"]  # the student is really pruned
    extraction = report["extraction"]
    assert extraction["weights max |diff| vs cpu"] == 0.0 and extraction["child device"] == "cpu"
    search = report["search"]
    assert search["ran on"] == "cpu" and 1 <= len(search["evaluated"]) <= 3 and search["best"] in search["evaluated"]
    rows = {(row["dtype"], row["shape"]): row for row in report["timing"]}
    assert set(rows) == {(dtype, shape) for dtype in ("float32", "bfloat16") for shape in ("1x16", "2x16")}
    assert all(row["bort_ms"] > 0 and row["bert_ms"] > 0 for row in rows.values())
    assert "bert/bort" in run.stdout  # the printed table


def test_gpu_check_without_cuda_exits_2_with_one_line_naming_the_cpu_flag(tmp_path):
    run = _run("--output", str(tmp_path / "gpu_check.json"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "no CUDA device" in run.stderr and "--device cpu" in run.stderr
    assert not (tmp_path / "gpu_check.json").exists()
