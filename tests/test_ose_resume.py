"""OSE never replaces a user's files, never reuses stale candidates, keeps its journal whole, and shares a folder.

Tiny random parents, a few-candidate grid and two training steps keep each test to seconds.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import transformers as tr

from hf_bort.cli import main as cli_main
from hf_bort.ose import OSEConfig, OSEResult, OSESearch, SearchSpace, read_text_lines
from tests.conftest import TINY_DIMS


REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(vocab_size=30522, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _parent(seed: int = 0) -> tr.BertModel:
    torch.manual_seed(seed)
    return tr.BertModel(tr.BertConfig(**CONFIG)).eval()


@pytest.fixture
def texts(wikitext_dir):
    return read_text_lines(wikitext_dir / "wiki.valid.raw")[:16]


def _search(parent, tokenizer, texts, output_dir, eval_dataset=None, allocation=None, **kwargs) -> OSESearch:
    config = OSEConfig(
        **{
            **dict(epsilon=1.0, interval=2, seq_len=16, batch_size=4, max_candidates=4, show_progress=False),
            **kwargs,
            "output_dir": output_dir,
        }
    )
    space = SearchSpace.from_config(parent.config, step=16, allocation=allocation)
    return OSESearch(parent, config, space=space, train_dataset=texts, eval_dataset=eval_dataset, tokenizer=tokenizer)


def _user_folder(path: Path) -> dict[str, bytes]:
    path.mkdir()
    files = {"result.json": b'{"mine": true}\n', "front.png": os.urandom(64), "notes.txt": b"keep me"}
    for name, data in files.items():
        (path / name).write_bytes(data)
    return files


def _unchanged(path: Path, files: dict[str, bytes]) -> bool:
    return sorted(os.listdir(path)) == sorted(files) and all((path / n).read_bytes() == d for n, d in files.items())


def test_a_user_folder_is_refused_and_left_byte_for_byte(tokenizer, texts, tmp_path, wikitext_dir, capsys):
    folder = tmp_path / "mine"
    files = _user_folder(folder)
    with pytest.raises(ValueError, match=r"mine is not empty and holds no search\.json.*pass a new or empty folder"):
        _search(_parent(), tokenizer, texts, folder).run()
    assert _unchanged(folder, files)

    parent_dir = tmp_path / "parent"
    _parent().save_pretrained(parent_dir)
    tokenizer.save_pretrained(parent_dir)
    capsys.readouterr()
    argv = ["search", "--model", str(parent_dir), "--train_file", str(wikitext_dir / "wiki.valid.raw")]
    assert cli_main([*argv, "--output_dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"hf-bort: error: output_dir {folder} is not empty" in err
    assert "new or empty folder" in err
    assert _unchanged(folder, files)

    a_file = tmp_path / "result.json"
    a_file.write_bytes(b"user data")
    assert cli_main([*argv, "--output_dir", str(a_file)]) == 2
    assert f"output_dir {a_file} is a file; pass a folder" in capsys.readouterr().err
    assert a_file.read_bytes() == b"user data"


def test_resume_reuses_only_what_the_same_search_produced(tokenizer, texts, tmp_path):
    run = tmp_path / "run"
    first = _search(_parent(), tokenizer, texts, run, eval_dataset=texts[-4:]).run()
    journal = (run / "candidates-0.jsonl").read_bytes()
    assert len(first.records) == 4

    again = _search(_parent(), tokenizer, texts, run, eval_dataset=texts[-4:])
    assert [(r.architecture, r.error) for r in again.run().records] == [
        (r.architecture, r.error) for r in first.records
    ]
    assert again.reused_candidates == len(first.records)
    assert (run / "candidates-0.jsonl").read_bytes() == journal  # nothing evaluated again

    # Same shape, other weights: the first parent's errors must not be reused.
    other = _parent(seed=1)
    assert all(a.shape == b.shape for a, b in zip(other.parameters(), _parent().parameters()))
    with pytest.raises(ValueError, match=r"different settings: parent_weights \(the parent's weights differ\)"):
        _search(other, tokenizer, texts, run, eval_dataset=texts[-4:]).run()
    with pytest.raises(ValueError, match=r"different settings: eval_data \(the eval data differ\)"):
        _search(_parent(), tokenizer, texts, run, eval_dataset=texts[-5:]).run()
    with pytest.raises(ValueError, match=r"different settings: train_data \(the training data differ\)"):
        _search(_parent(), tokenizer, texts[:-1], run, eval_dataset=texts[-4:]).run()
    with pytest.raises(
        ValueError, match=r"different settings: seq_len \(16 -> 24\), train_data \(the training data differ\)"
    ):
        _search(_parent(), tokenizer, texts, run, eval_dataset=texts[-4:], seq_len=24).run()
    with pytest.raises(ValueError, match=r"different settings: space \(the search space differs\)"):
        _search(_parent(), tokenizer, texts, run, eval_dataset=texts[-4:], allocation="uniform").run()  # other layers
    assert (run / "candidates-0.jsonl").read_bytes() == journal


def test_a_truncated_last_journal_line_is_repaired_and_the_next_record_is_intact(tokenizer, texts, tmp_path):
    run = tmp_path / "run"
    clean = _search(_parent(), tokenizer, texts, run).run()
    journal = run / "candidates-0.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    # A crash in the middle of writing the third record: two whole lines, then half a line without a newline.
    journal.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])

    resumed = _search(_parent(), tokenizer, texts, run)
    result = resumed.run()
    assert resumed.reused_candidates == 2
    repaired = journal.read_bytes()
    assert repaired.startswith(b"".join(lines[:2])) and repaired.endswith(b"\n")
    records = [json.loads(line) for line in repaired.splitlines()]  # every line is one whole record
    assert len(records) == len(clean.records) == len({json.dumps(r["architecture"]) for r in records})
    assert [(r.architecture, r.error) for r in result.records] == [(r.architecture, r.error) for r in clean.records]


def test_a_record_appended_onto_a_cut_line_is_still_read(tokenizer, texts, tmp_path):
    """A journal written by an older version (a cut line with the next record glued on) loses no finished record."""
    run = tmp_path / "run"
    first = _search(_parent(), tokenizer, texts, run).run()
    journal = run / "candidates-0.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0] + lines[1][:20] + b"".join(lines[2:]))  # line 2 cut short, line 3 glued onto it
    resumed = _search(_parent(), tokenizer, texts, run)
    resumed.run()
    assert resumed.reused_candidates == len(first.records) - 1  # only the cut record is evaluated again


def test_corrupt_marker_and_bad_result_files_fail_with_one_clear_line(tokenizer, texts, tmp_path):
    run = tmp_path / "run"
    _search(_parent(), tokenizer, texts, run, max_candidates=1).run()
    (run / "search.json").write_text('{"settings": ')
    with pytest.raises(ValueError, match=r"search\.json is corrupt .*delete it to start again.*another output_dir"):
        _search(_parent(), tokenizer, texts, run, max_candidates=1).run()
    (run / "search.json").write_text('{"parent": {}, "epsilon": 1.0}')  # a marker without the format header
    with pytest.raises(ValueError, match=r"not written by this version of hf_bort's OSE"):
        _search(_parent(), tokenizer, texts, run, max_candidates=1).run()

    with pytest.raises(FileNotFoundError, match=r"OSE result .*missing\.json does not exist; pass the result\.json"):
        OSEResult.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(ValueError, match=r"bad\.json is not JSON \(Expecting value.*pass the result\.json"):
        OSEResult.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"best": {"depth": 1}}')
    with pytest.raises(ValueError, match=r"other\.json is not an OSE result: missing \[.*'epsilon'"):
        OSEResult.load(tmp_path / "other.json")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--max_candidates", "0"], "max_candidates must be a positive integer, got 0"),
        (["--seq_len", "0"], "seq_len must be a positive integer, got 0"),
        (["--batch_size", "0"], "batch_size must be a positive integer, got 0"),
        (["--seq_len", "65"], "seq_len 65 exceeds the parent's position table (64 positions); pass seq_len=64"),
        (["--min_speedup", "-2"], "min_speedup must be a positive number, got -2.0"),
    ],
)
def test_cli_bad_values_end_in_one_line(flags, message, tokenizer, wikitext_dir, tmp_path, capsys):
    parent_dir = tmp_path / "parent"
    _parent().save_pretrained(parent_dir)
    tokenizer.save_pretrained(parent_dir)
    argv = ["search", "--model", str(parent_dir), "--train_file", str(wikitext_dir / "wiki.valid.raw")]
    argv += ["--max_texts", "8", "--output_dir", str(tmp_path / "run"), *flags]
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"hf-bort: error: {message}" in err, err


@pytest.mark.slow
def test_two_searches_into_one_folder_evaluate_each_candidate_once(tmp_path, minilm_path, wikitext_dir):
    script = REPO_ROOT / "tests" / "scripts" / "ose_tiny_search.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    run = tmp_path / "shared-run"
    reports = [tmp_path / f"report-{n}.json" for n in range(2)]
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(run), str(minilm_path), str(wikitext_dir / "wiki.valid.raw"), str(r)],
            env=env,
        )
        for r in reports
    ]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    first, second = (json.loads(r.read_text()) for r in reports)
    journal = [json.loads(line) for line in (run / "candidates-0.jsonl").read_text().splitlines()]
    evaluated = first["evaluated"] + second["evaluated"]
    # Each candidate evaluated exactly once in total, and each process's result holds every candidate.
    assert sorted(map(json.dumps, evaluated)) == sorted(json.dumps(r["architecture"]) for r in journal)
    assert len(evaluated) == len(first["records"]) >= 4
    assert first == {**second, "evaluated": first["evaluated"]}
    assert not [p for p in (run / "claims").iterdir() if p.name != ".lock"]  # every claim released


def test_a_live_claim_is_waited_for_and_a_dead_one_taken_over(tokenizer, texts, tmp_path):
    run = tmp_path / "run"
    first = _search(_parent(), tokenizer, texts, run, max_candidates=2).run()
    target = first.records[-1].architecture
    journal = run / "candidates-0.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(line for line in lines if json.loads(line)["architecture"] != target.as_dict()))
    claim = run / "claims" / f"{target.depth}-{target.heads}-{target.hidden}-{target.intermediate}.json"
    host = socket.gethostname()

    # Held by a live process on this host (pytest's parent): the search waits for it, then gives up clearly.
    claim.write_text(json.dumps({"pid": os.getppid(), "host": host, "time": time.time()}))
    with pytest.raises(TimeoutError, match=r"Waited 1 s for 1 candidate\(s\) claimed by another search.*delete"):
        _search(_parent(), tokenizer, texts, run, max_candidates=2, wait_timeout=1).run()
    assert claim.exists() and journal.read_bytes().count(b"\n") == 1

    # Held by a process that has exited: the claim is stale and the candidate is evaluated here.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    claim.write_text(json.dumps({"pid": int(dead.stdout), "host": host, "time": time.time()}))
    resumed = _search(_parent(), tokenizer, texts, run, max_candidates=2).run()
    assert [(r.architecture, r.error) for r in resumed.records] == [(r.architecture, r.error) for r in first.records]
    assert not claim.exists()


@pytest.mark.parametrize("where", ["taking the claim", "journaling the record", "releasing the claim"])
def test_an_interrupt_anywhere_around_a_candidate_leaves_no_claim(
    where, tokenizer, texts, tmp_path, monkeypatch, request
):
    """Ctrl-C just after the claim file is written, just after the record is journaled, or while the claim is being
    released (SIGINT is then held until the release is done): the search stops and this run's claim is gone."""
    from hf_bort.ose import journal as journal_module

    # Python's own SIGINT handler, as a terminal gives it: a shell starts background jobs (CI) with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))

    def interrupt_after(function):
        def wrapped(*args, **kwargs):
            function(*args, **kwargs)
            raise KeyboardInterrupt

        return wrapped

    if where == "taking the claim":
        monkeypatch.setattr(journal_module.Journal, "_take_claim", interrupt_after(journal_module.Journal._take_claim))
    elif where == "journaling the record":
        monkeypatch.setattr(journal_module.Journal, "append", interrupt_after(journal_module.Journal.append))
    else:
        read_claim, release, releasing = journal_module._read_claim, journal_module.Journal.release, []

        def signalled(path):
            if releasing:
                os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, raised by Python's default handler
            return read_claim(path)

        def tracked_release(self, arch):
            releasing.append(arch)
            return release(self, arch)

        monkeypatch.setattr(journal_module, "_read_claim", signalled)
        monkeypatch.setattr(journal_module.Journal, "release", tracked_release)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _search(_parent(), tokenizer, texts, run, max_candidates=2).run()
    claims = [p.name for p in (run / "claims").iterdir() if p.name != ".lock"]
    assert claims == []
    assert (run / "candidates-0.jsonl").exists() == (where != "taking the claim")
