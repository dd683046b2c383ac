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
from hf_bort.glue import GLUE_TASKS, get_task, load_glue
from hf_bort.testing import offline_minilm_dir
from tests.conftest import REPO_ROOT, SHARED, two_process_launcher
from tests.test_glue_data import write_glue_task


_spec = importlib.util.spec_from_file_location("glue_recipe", REPO_ROOT / "recipes" / "glue.py")
recipe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(recipe)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny random BERT with the real MiniLM WordPiece tokenizer, saved like a user's checkpoint."""
    minilm_path = offline_minilm_dir()
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


def _splits(args):
    task, raw = recipe.load_data(args)
    return recipe.load_splits(task, raw, args)


def _args(*argv):
    return recipe.parse_args(["--model_name_or_path", "m", *argv])


def test_per_task_defaults_and_overrides(capsys):
    for name, defaults in GLUE_TASKS.items():
        args = _args("--task_name", name)
        assert (args.training.learning_rate, args.training.num_train_epochs, args.data.max_seq_length) == (
            defaults.learning_rate,
            defaults.num_train_epochs,
            defaults.max_seq_length,
        )
    assert _args("--task_name", "RTE", "--lora").training.learning_rate == pytest.approx(3e-4)
    args = _args("--task_name", "rte", "--learning_rate", "1e-4", "--num_train_epochs", "1", "--max_seq_length", "32")
    assert (
        args.training.learning_rate,
        args.training.num_train_epochs,
        args.data.max_seq_length,
        args.training.output_dir,
    ) == (
        1e-4,
        1,
        32,
        "outputs/m-rte",
    )
    with pytest.raises(SystemExit):
        recipe.parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert all(f"  {name} " in help_text for name in GLUE_TASKS)


def test_every_agora_setting_is_a_flag():
    from hf_bort.agora import AgoraArguments

    args = _args("--task_name", "rte", "--samples_per_error", "7", "--agora_patience", "2", "--agora_replay", "false")
    assert (args.training.samples_per_error, args.training.agora_patience, args.training.agora_replay) == (7, 2, False)
    assert isinstance(args.training, AgoraArguments)


def test_bad_arguments_are_clear_errors(capsys):
    with pytest.raises(ValueError, match="Unknown GLUE task 'sst5'"):
        _args("--task_name", "sst5")
    with pytest.raises(SystemExit):
        _args("--task_name", "rte", "--agora_dev_fraction", "1.5")
    assert "--agora_dev_fraction must be in (0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _args("--task_name", "rte", "--agora")
    assert "--agora needs --agora_teacher" in capsys.readouterr().err


def test_an_earlier_run_is_replaced_only_with_overwrite_output_dir(tmp_path, tiny_bert):
    from hf_bort.output_dir import record_run

    argv = ["--model_name_or_path", str(tiny_bert), "--task_name", "rte", "--output_dir", str(tmp_path)]
    record_run(tmp_path, "glue.py", recipe._run_settings(recipe.parse_args(argv)), resume=None)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match="earlier glue.py run. Pass --overwrite_output_dir .*True to continue"):
        recipe.main(argv)
    assert (tmp_path / "results.json").read_text() == "{}"


def test_without_agora_the_official_dev_set_is_evaluated(glue_dir):
    train, eval_sets, reported = _splits(_args("--task_name", "rte", "--data_dir", str(glue_dir)))
    assert (
        len(train) == 2490
        and list(eval_sets) == list(reported) == ["validation"]
        and len(reported["validation"]) == 277
    )


def test_agora_carves_dev_out_of_train_and_holds_out_the_official_dev(glue_dir):
    args = _args(
        "--task_name",
        "rte",
        "--data_dir",
        str(glue_dir),
        "--agora",
        "--agora_teacher",
        "t",
        "--agora_dev_fraction",
        "0.2",
    )
    train, eval_sets, reported = _splits(args)
    dev, selection = eval_sets["dev"], eval_sets["selection"]  # a selection split is carved by default
    assert list(reported) == ["dev", "selection", "test"] and reported["dev"] is dev
    assert len(train) + len(dev) + len(selection) == 2490 and abs(len(dev) - 498) <= 2  # RTE repeats two pairs
    assert abs(len(selection) - 249) <= 2  # 10% of train
    pairs = [{(r["sentence1"], r["sentence2"]) for r in split} for split in (train, dev, selection)]
    assert not pairs[0] & pairs[1] and not pairs[0] & pairs[2] and not pairs[1] & pairs[2]
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
        "--task_name",
        "stsb",
        "--data_dir",
        str(tmp_path),
        "--agora",
        "--agora_teacher",
        "t",
        "--agora_dev_fraction",
        "0.5",
        "--agora_selection_fraction",
        "0",  # 2 rows: no room for a selection split as well
    )
    train, eval_sets, reported = _splits(args)
    assert len(train) == len(eval_sets["dev"]) == 1 and list(reported) == ["dev", "test"]


def test_hub_flags_pass_through_to_the_trainer(tmp_path):
    args = _args(
        "--task_name", "sst2", "--push_to_hub", "--hub_model_id", "me/bort-sst2", "--output_dir", str(tmp_path)
    )
    training_args = recipe.build_training_arguments(args, get_task("sst2"))
    assert training_args.push_to_hub and training_args.hub_model_id == "me/bort-sst2"
    assert training_args.learning_rate == args.training.learning_rate and training_args.num_train_epochs == 3
    reporting = _args("--task_name", "sst2", "--report_to", "tensorboard", "--output_dir", str(tmp_path))
    assert recipe.build_training_arguments(reporting, get_task("sst2")).report_to == ["tensorboard"]


def test_label_count_mismatch_is_a_clear_error(tmp_path, tiny_bort_config):
    tiny_bort_config.num_labels = 3
    BortForSequenceClassification(tiny_bort_config).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"head has 3 labels but GLUE sst2 needs 2.*--ignore_mismatched_sizes"):
        recipe.load_model(
            recipe.parse_args(["--model_name_or_path", str(tmp_path), "--task_name", "sst2"]),
            get_task("sst2"),
        )
    model = recipe.load_model(
        recipe.parse_args(["--model_name_or_path", str(tmp_path), "--task_name", "sst2", "--ignore_mismatched_sizes"]),
        get_task("sst2"),
    )
    assert model.config.num_labels == 2 and model.classifier.out_proj.out_features == 2
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_a_base_checkpoint_gets_the_task_head(tmp_path, tiny_bort_config):
    from hf_bort import BortModel

    BortModel(tiny_bort_config).save_pretrained(tmp_path)
    model = recipe.load_model(
        recipe.parse_args(["--model_name_or_path", str(tmp_path), "--task_name", "mnli"]),
        get_task("mnli"),
    )
    assert model.classifier.out_proj.out_features == 3
    regression = recipe.load_model(
        recipe.parse_args(["--model_name_or_path", str(tmp_path), "--task_name", "stsb"]),
        get_task("stsb"),
    )
    assert regression.config.problem_type == "regression" and regression.classifier.out_proj.out_features == 1


def test_lora_trains_the_adapter_and_the_head_only(tmp_path, tiny_bort_config):
    BortForSequenceClassification(tiny_bort_config).save_pretrained(tmp_path)
    model = recipe.load_model(
        recipe.parse_args(["--model_name_or_path", str(tmp_path), "--task_name", "rte", "--lora"]),
        get_task("rte"),
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
        recipe.parse_args(["--model_name_or_path", str(tiny_bert), "--task_name", "rte", "--lora"]),
        get_task("rte"),
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
        "--model_name_or_path",
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
            "--task_name",
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
    card = (out / "README.md").read_text()
    assert f"{scores['accuracy']:.4f}" in card
    # the data named is what was read: the local files, not the Hub's nyu-mll/glue
    files = {"train": str(glue_dir / "MRPC" / "train.tsv"), "validation": str(glue_dir / "MRPC" / "dev.tsv")}
    assert results["data"] == {"files": files}
    data_section = card.split("## Data")[1].split("##")[0]
    assert f"`{files['train']}` (train), `{files['validation']}` (validation)" in data_section
    assert "nyu-mll/glue](" not in card and "datasets:" not in card.split("---")[1]


def test_predictions_collapsed_to_one_class_are_a_warning_in_the_log_results_and_card(
    tmp_path, tiny_bert, glue_dir, caplog
):
    """A classifier stuck on one class scores accuracy = that class's share (MRPC F1 0.81, Matthews 0.000); the run
    must say so, not report it like any other score."""
    stuck = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    with torch.no_grad():
        stuck.classifier.weight.zero_()
        stuck.classifier.bias.copy_(torch.tensor([5.0, -5.0]))  # 'negative' whatever the text
    stuck.save_pretrained(tmp_path / "stuck")
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "stuck")
    out = tmp_path / "out"
    argv = [
        "--task_name",
        "sst2",
        "--data_dir",
        str(glue_dir),
        "--max_train_samples",
        "16",
        "--max_eval_samples",
        "40",
    ]
    with caplog.at_level("WARNING"):
        results = recipe.main(_run(tmp_path / "stuck", out, *argv, "--learning_rate", "1e-9"))
    dev = load_glue("sst2", glue_dir, splits=("validation",))["validation"].select(range(40))
    share = 1 - np.mean(dev["label"])
    assert results["metrics"]["validation"]["accuracy"] == pytest.approx(share)
    warning = f"On validation the model predicts 'negative' for all 40 rows ({share:.1%} of them are 'negative')"
    assert len(results["warnings"]) == 1 and results["warnings"][0].startswith(warning)
    assert json.loads((out / "results.json").read_text())["warnings"] == results["warnings"]
    assert warning in caplog.text and f"**Warning:** {warning}" in (out / "README.md").read_text()


def test_a_collapse_warning_needs_one_predicted_class_and_several_true_ones():
    task = get_task("cola")
    one_class = np.array([[2.0, -1.0]] * 4)
    assert recipe.collapse_warning("test", one_class, np.array([0, 1, 0, 0]), task).startswith(
        "On test the model predicts 'unacceptable' for all 4 rows (75.0% of them"
    )
    assert recipe.collapse_warning("test", one_class, np.array([0, 0, 0, 0]), task) is None  # nothing else to predict
    assert recipe.collapse_warning("test", np.array([[2.0, -1.0], [0.0, 1.0]]), np.array([0, 1]), task) is None
    assert recipe.collapse_warning("test", np.zeros((3, 1)), np.array([1.0, 2.0, 3.0]), get_task("stsb")) is None


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
    recipe.main(_run(tiny_bert, out, "--task_name", "stsb", "--data_dir", str(tmp_path / "glue")))
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
            "--task_name",
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


@pytest.mark.parametrize("selection", [False, True])
def test_agora_end_to_end_reports_the_official_dev_as_test(tmp_path, tiny_bert, glue_dir, selection):
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
            "--task_name",
            "rte",
            "--data_dir",
            str(glue_dir),
            "--max_train_samples",
            "80",
            "--max_eval_samples",
            "24",
            "--max_seq_length",
            "64",
            "--agora",
            "--agora_teacher",
            str(teacher),
            "--agora_rounds",
            "2",
            "--agora_allow_weak_teacher",  # the random tiny teacher is below the bar (2/3 on the carved dev split)
            *([] if selection else ["--agora_selection_fraction", "0"]),  # a selection split is on by default
            *([] if selection else ["--agora_selection_tolerance", "1"]),  # default inf: the last round's model
        )
    )
    results = json.loads((out / "results.json").read_text())
    carved = ["dev", "selection"] if selection else ["dev"]
    assert list(results["metrics"]) == [*carved, "test"] and results["official_dev_is"] == "test"
    expected_rows = {"train": 64, "dev": 8, "selection": 8} if selection else {"train": 72, "dev": 8}
    assert results["rows"] == {**expected_rows, "test": 24} and 1 <= results["agora_rounds"] <= 2
    assert results["agora_selected_by"] == ("agora_selection" if selection else "agora_dev")
    assert results["agora_metric"] == "accuracy" and 0 <= results["agora_teacher_report"]["score"] <= 1
    card = (out / "README.md").read_text()
    assert ("separate selection split" in card) == selection and "never trained on" not in card
    assert f"The model comes from round {results['agora_best_round']}, chosen on the" in card
    if selection:  # the default rule: the last round's model
        assert results["agora_selection_tolerance"] is None and results["agora_best_round"] == results["agora_rounds"]
        assert "the last round's best setting on that split (a later round, trained on more rows, is always" in card
    else:
        assert results["agora_selection_tolerance"] == 1.0 and results["agora_best_round"] in (1, 2)
        assert "unless the best score of an earlier round leads it by more than 1.0 standard error(s)" in card
    comparison = results["agora_teacher_report"]["student_comparison"]  # the teacher against the round-1 student
    assert comparison["split"] == ("agora_selection" if selection else "agora_dev")
    split_name = "selection" if selection else "carved dev"
    assert f"After round one, on the {split_name} split ({comparison['rows']} rows neither had trained on)" in card
    assert ("the teacher was not better than the student" in card) == (not comparison["teacher_better"])
    assert ("not better than the student" in " ".join(results["warnings"])) == (not comparison["teacher_better"])
    dev = load_glue("rte", glue_dir, splits=("validation",))["validation"].select(range(24))
    predictions, _ = _predict(out, dev, get_task("rte"))
    assert results["metrics"]["test"]["accuracy"] == pytest.approx(accuracy_score(dev["label"], predictions))


def _write_csv(path, header, rows):
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _review_rows(rng, n, regression):
    words = ["good", "bad", "fine", "awful", "great", "poor", "the plot", "the cast"]
    labels = [f"{rng.uniform(0, 5):.3f}" for _ in range(n)] if regression else rng.choice(["neg", "pos", "mixed"], n)
    return [[" ".join(rng.choice(words, 4)), label] for label in labels]


def test_csv_classification_end_to_end_matches_the_saved_model(tmp_path, tiny_bert):
    rng = np.random.default_rng(0)
    train = _write_csv(tmp_path / "train.csv", ["review", "label"], _review_rows(rng, 40, False))
    dev = _write_csv(tmp_path / "dev.csv", ["review", "label"], _review_rows(rng, 16, False))
    out = tmp_path / "out"
    results = recipe.main(_run(tiny_bert, out, "--train_file", str(train), "--validation_file", str(dev)))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "mixed", 1: "neg", 2: "pos"}  # sorted label strings of train
    rows = datasets.load_dataset("csv", data_files=str(dev))["train"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer(list(rows["review"]), padding=True, return_tensors="pt")).logits
    gold = [model.config.label2id[label] for label in rows["label"]]
    assert results["metrics"]["validation"]["accuracy"] == pytest.approx(accuracy_score(gold, logits.argmax(-1)))
    assert results["rows"] == {"train": 40, "validation": 16} and not (out / "README.md").exists()


def test_tsv_regression_scores_pearson_on_the_saved_model(tmp_path, tiny_bert):
    rng = np.random.default_rng(1)
    header = ["sentence1", "sentence2", "label"]
    for name, n in (("train", 32), ("dev", 24)):
        rows = [[a, b, label] for (a, _), (b, label) in zip(_review_rows(rng, n, True), _review_rows(rng, n, True))]
        (tmp_path / f"{name}.tsv").write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    out = tmp_path / "out"
    argv = ["--train_file", str(tmp_path / "train.tsv"), "--validation_file", str(tmp_path / "dev.tsv")]
    results = recipe.main(_run(tiny_bert, out, *argv))
    dev = datasets.load_dataset("csv", data_files=str(tmp_path / "dev.tsv"), delimiter="\t")["train"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.problem_type == "regression"
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        batch = tokenizer(
            list(dev["sentence1"]), list(dev["sentence2"]), padding=True, truncation=True, return_tensors="pt"
        )
        predictions = model(**batch).logits[:, 0].numpy()
    scores = results["metrics"]["validation"]
    assert scores["pearson"] == pytest.approx(pearsonr(predictions, dev["label"])[0], abs=1e-5)


def test_bad_data_and_paths_are_clear_errors(tmp_path, tiny_bert, capsys):
    rng = np.random.default_rng(2)
    train = _write_csv(tmp_path / "train.csv", ["review", "label"], _review_rows(rng, 8, False))
    unlabelled = _write_csv(tmp_path / "u.csv", ["review", "stars"], [["good", 1]])
    base = ["--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        _args("--task_name", "rte", "--max_train_samples", "0")
    assert "--max_train_samples must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        recipe.parse_args(["--model_name_or_path", "m"])
    assert "Pass --task_name (a GLUE task) or --train_file" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no 'label' column"):
        recipe.main(["--model_name_or_path", str(tiny_bert), "--train_file", str(unlabelled), "--validation_file", str(unlabelled), *base])  # fmt: skip
    with pytest.raises(ValueError, match="needs --validation_file"):
        recipe.main(["--model_name_or_path", str(tiny_bert), "--train_file", str(train), *base])
    with pytest.raises(FileNotFoundError, match="--validation_file .* does not exist"):
        recipe.main(["--model_name_or_path", str(tiny_bert), "--train_file", str(train), "--validation_file", "no.csv", *base])  # fmt: skip
    with pytest.raises((ValueError, FileNotFoundError), match="nowhere"):
        recipe.main(["--model_name_or_path", str(tmp_path / "nowhere"), "--train_file", str(train), *base])
    assert not (tmp_path / "out").exists()


def test_an_agora_pool_holding_official_dev_rows_is_one_line(tmp_path, tiny_bert, glue_dir, capsys):
    teacher = tmp_path / "teacher"
    AutoModelForSequenceClassification.from_pretrained(
        tiny_bert,
        num_labels=2,
        id2label={0: "entailment", 1: "not_entailment"},
        label2id={"entailment": 0, "not_entailment": 1},
    ).save_pretrained(teacher)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(teacher)
    official = load_glue("rte", glue_dir, splits=("validation",))["validation"]
    unlabelled = load_glue("rte", glue_dir, splits=("train",))["train"].select(range(2000, 2010))
    pool = tmp_path / "pool.txt"  # a pair per line, tab-separated; the 11th is an official dev pair
    rows = [
        *zip(unlabelled["sentence1"], unlabelled["sentence2"]),
        (official[3]["sentence1"], official[3]["sentence2"]),
    ]
    pool.write_text("".join(f"{a}\t{b}\n" for a, b in rows))
    before = pool.read_bytes()
    argv = _run(
        tiny_bert, tmp_path / "out", "--task_name", "rte", "--data_dir", str(glue_dir), "--max_train_samples", "40",
        "--max_eval_samples", "2", "--agora", "--agora_teacher", str(teacher), "--agora_allow_weak_teacher",
        "--agora_sampler", "pool", "--agora_pool", str(pool),
    )  # fmt: skip
    assert recipe.run_main(recipe.main, "glue.py", argv) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # one line, after load bars
    assert error.startswith("glue.py: error: The Agora pool holds 1 row(s) of the held-out set")
    assert "leak the test" in error and pool.read_bytes() == before


def test_resume_continues_from_the_last_checkpoint_and_refuses_changed_settings(tmp_path, tiny_bert):
    rng = np.random.default_rng(3)
    train = _write_csv(tmp_path / "train.csv", ["review", "label"], _review_rows(rng, 32, False))
    dev = _write_csv(tmp_path / "dev.csv", ["review", "label"], _review_rows(rng, 8, False))
    out = tmp_path / "out"
    argv = _run(tiny_bert, out, "--train_file", str(train), "--validation_file", str(dev), "--save_strategy", "epoch")
    recipe.main([*argv, "--per_device_train_batch_size", "16"])
    assert (out / "checkpoint-2").is_dir()
    with pytest.raises(FileExistsError, match="--resume_from_checkpoint True"):
        recipe.main(argv)
    resumed = recipe.main([*argv, "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--resume_from_checkpoint", "True"])  # fmt: skip
    assert (out / "checkpoint-4").is_dir() and resumed["rows"]["train"] == 32
    with pytest.raises(ValueError, match="learning_rate"):
        recipe.main([*argv, "--learning_rate", "1e-3", "--resume_from_checkpoint", "True"])


def test_agora_ranks_by_the_task_s_own_metric():
    expected = {"cola": "matthews_correlation", "mrpc": "f1", "qqp": "f1", "stsb": "pearson", "sst2": "accuracy"}
    assert {name: recipe._agora_metric(get_task(name)) for name in expected} == expected
