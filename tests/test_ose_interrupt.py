"""`hf-bort search` killed mid-run (SIGINT, SIGKILL) resumes to exactly the result of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers as tr

from hf_bort.cli import main as cli_main
from hf_bort.ose import OSEResult
from tests.conftest import TINY_DIMS


REPO_ROOT = Path(__file__).resolve().parents[1]
# The CLI with each candidate slowed down, so that the test can interrupt it between two journaled candidates.
SLOW_CLI = """
import os, signal, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal gives it, even when started in the background
from hf_bort.ose.search import OSESearch
from hf_bort.cli import main
evaluate = OSESearch._evaluate
def slow(self, *args, **kwargs):
    time.sleep(float(os.environ["OSE_TEST_DELAY"]))
    return evaluate(self, *args, **kwargs)
OSESearch._evaluate = slow
raise SystemExit(main())
"""


@pytest.fixture
def search_argv(tmp_path, minilm_path, wikitext_dir):
    torch.manual_seed(0)
    parent = tr.BertModel(
        tr.BertConfig(vocab_size=30522, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    parent.save_pretrained(tmp_path / "parent")
    tr.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(tmp_path / "parent")
    argv = ["search", "--model", str(tmp_path / "parent"), "--train_file", str(wikitext_dir / "wiki.valid.raw")]
    argv += ["--epsilon", "1", "--interval", "2", "--seq_len", "16", "--batch_size", "4", "--step", "16"]
    return argv + ["--max_texts", "16", "--max_candidates", "4", "--show_progress", "false"]


def _summary(path: Path) -> tuple:
    result = OSEResult.load(path)
    return [(r.architecture, r.error) for r in result.records], result.front, result.best


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_killed_search_resumes_to_the_uninterrupted_result(sig, search_argv, tmp_path):
    assert cli_main([*search_argv, "--output_dir", str(tmp_path / "clean")]) == 0
    clean_records, clean_front, clean_best = _summary(tmp_path / "clean" / "result.json")
    assert len(clean_records) == 4

    run = tmp_path / "run"
    journal = run / "candidates-0.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, *search_argv, "--output_dir", str(run)],
        env={**env, "OSE_TEST_DELAY": "1.5"},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 1):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no candidate was journaled in time"
        time.sleep(0.05)
    process.send_signal(sig)
    returncode = process.wait(timeout=120)
    stderr = process.stderr.read()
    if sig == signal.SIGINT:
        assert returncode == 130 and "hf-bort: interrupted" in stderr, stderr
        assert not [p for p in (run / "claims").iterdir() if p.name != ".lock"]  # the claim was released
    else:
        assert returncode == -signal.SIGKILL
    done = journal.read_bytes().count(b"\n")
    assert 1 <= done < 4 and not (run / "result.json").exists()

    assert cli_main([*search_argv, "--output_dir", str(run)]) == 0  # resumes, taking over a dead process's claim
    records, front, best = _summary(run / "result.json")
    assert [a for a, _ in records] == [a for a, _ in clean_records]
    assert [e for _, e in records] == pytest.approx([e for _, e in clean_records], abs=1e-6)
    assert (front, best) == (clean_front, clean_best)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 4  # the candidates finished before the kill were not evaluated again
    assert not [p for p in (run / "claims").iterdir() if p.name != ".lock"]
