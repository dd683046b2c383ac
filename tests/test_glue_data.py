"""hf_bort.glue: every task's original GLUE layout (synthetic files written in the exact formats), and the real files."""

from collections import Counter

import datasets
import pytest

from hf_bort.glue import GLUE_TASKS, get_task, load_glue


# Two labelled rows and one test row per task, in each task's Hub label space.
_PAIRS = [("The cat sat.", "A cat was sitting."), ("It rained all day.", "The sun shone.")]


def _write(path, lines, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")


def _tab(*fields):
    return "\t".join(str(f) for f in fields)


def write_glue_task(root, name):
    """Write train/dev/test files for `name` in the GLUE distribution's format; return the expected labels."""
    task = GLUE_TASKS[name]
    folder = root / task.folder
    (a1, b1), (a2, b2) = _PAIRS
    if name == "cola":
        for stem in ("train", "dev"):  # headerless: source, label, original judgement, sentence
            _write(folder / f"{stem}.tsv", [_tab("gj04", 1, "", a1), _tab("gj04", 0, "*", a2)])
        _write(folder / "test.tsv", [_tab("index", "sentence"), _tab(0, a1)])
        return [1, 0]
    if name == "sst2":
        for stem in ("train", "dev"):
            _write(folder / f"{stem}.tsv", [_tab("sentence", "label"), _tab(a1 + " ", 1), _tab(a2 + " ", 0)])
        _write(folder / "test.tsv", [_tab("index", "sentence"), _tab(0, a1)])
        return [1, 0]
    if name == "mrpc":
        for stem in ("train", "dev"):
            _write(
                folder / f"{stem}.tsv",
                [
                    _tab("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                    _tab(1, 11, 12, a1, b1),
                    _tab(0, 21, 22, a2, b2),
                ],
                bom=True,
            )
        _write(folder / "test.tsv", [_tab("index", "#1 ID", "#2 ID", "#1 String", "#2 String"), _tab(0, 1, 2, a1, b1)])
        return [1, 0]
    if name == "stsb":
        head = ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2")
        for stem in ("train", "dev"):
            _write(
                folder / f"{stem}.tsv",
                [
                    _tab(*head, "score"),
                    _tab(0, "main-captions", "MSRvid", "2012test", 1, "none", "none", a1, b1, 4.25),
                    _tab(1, "main-news", "MSRvid", "2012test", 2, "none", "none", a2, b2, 0.5),
                ],
            )
        _write(folder / "test.tsv", [_tab(*head), _tab(0, "main-news", "f", "2012", 3, "none", "none", a1, b1)])
        return [4.25, 0.5]
    if name == "qqp":
        for stem in ("train", "dev"):  # truncated rows: tests/test_bad_input.py (skipped up to 1% of train)
            _write(
                folder / f"{stem}.tsv",
                [
                    _tab("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                    _tab(7, 1, 2, a1, b1, 1),
                    _tab(9, 5, 6, a2, b2, 0),
                ],
            )
        _write(folder / "test.tsv", [_tab("id", "question1", "question2"), _tab(0, a1, b1)])
        return [1, 0]
    if name == "mnli":
        head = (
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
        )
        parses = ("( The cat )", "( A cat )", "(ROOT (S))", "(ROOT (S))")
        _write(
            folder / "train.tsv",
            [
                _tab(*head, "label1", "gold_label"),
                _tab(0, 1, "1e", "fiction", *parses, a1, b1, "contradiction", "contradiction"),
                _tab(1, 2, "2n", "fiction", *parses, a2, b2, "neutral", "neutral"),
            ],
        )
        for stem in ("dev_matched", "dev_mismatched"):
            _write(
                folder / f"{stem}.tsv",
                [
                    _tab(*head, *(f"label{i}" for i in range(1, 6)), "gold_label"),
                    _tab(0, 1, "1e", "slate", *parses, a1, b1, *["contradiction"] * 5, "contradiction"),
                    _tab(1, 2, "2n", "slate", *parses, a2, b2, *["neutral"] * 5, "neutral"),
                ],
            )
        for stem in ("test_matched", "test_mismatched"):
            _write(folder / f"{stem}.tsv", [_tab(*head), _tab(0, 1, "1e", "slate", *parses, a1, b1)])
        return [2, 1]
    # qnli, rte: string labels; wnli: 0/1. All three: index, sentence pair, label; test without label.
    columns = ("question", "sentence") if name == "qnli" else ("sentence1", "sentence2")
    labels = ("not_entailment", "entailment") if name != "wnli" else (0, 1)
    for stem in ("train", "dev"):
        _write(
            folder / f"{stem}.tsv",
            [_tab("index", *columns, "label"), _tab(0, a1, b1, labels[0]), _tab(1, a2, b2, labels[1])],
        )
    _write(folder / "test.tsv", [_tab("index", *columns), _tab(0, a1, b1)])
    return [task.label_names.index("not_entailment"), task.label_names.index("entailment")]


@pytest.mark.parametrize("name", list(GLUE_TASKS))
def test_every_task_loads_from_the_original_layout(tmp_path, name):
    task = get_task(name)
    expected_labels = write_glue_task(tmp_path, name)
    loaded = load_glue(name, tmp_path)

    assert list(loaded) == [split for split, _ in task.splits]
    (a1, b1), (a2, b2) = _PAIRS
    for split, ds in loaded.items():
        assert ds.column_names == [*task.text_columns, "label", "idx"]
        first_texts = [ds[0][column] for column in task.text_columns]
        assert first_texts[0].strip() == a1 and first_texts[1:] in ([], [b1])
        if split.startswith("test"):
            assert ds["label"] == [-1] and len(ds) == 1
            continue
        assert ds["idx"] == [0, 1]
        assert [ds[1][column].strip() for column in task.text_columns] == [a2, b2][: len(task.text_columns)]
        if task.is_regression:
            assert ds.features["label"] == datasets.Value("float32")
            assert ds["label"] == pytest.approx(expected_labels)
        else:
            assert ds["label"] == expected_labels
            assert ds.features["label"].names == list(task.label_names)


def test_task_folder_itself_is_accepted(tmp_path):
    write_glue_task(tmp_path, "rte")
    assert len(load_glue("rte", tmp_path / "RTE", splits=("train",))["train"]) == 2


def test_unknown_task_and_aliases():
    assert get_task("SST-2") is get_task("sst2")
    assert get_task("STS-B").is_regression and get_task("stsb").num_labels == 1
    with pytest.raises(ValueError, match="Unknown GLUE task 'sst3'.*sst2"):
        get_task("sst3")


def test_missing_split_is_a_clear_error(tmp_path):
    write_glue_task(tmp_path, "mrpc")
    (tmp_path / "MRPC" / "dev.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"split 'validation'.*dev\.tsv"):
        load_glue("mrpc", tmp_path)
    with pytest.raises(ValueError, match="no split 'validation_matched'"):
        load_glue("mrpc", tmp_path, splits=("validation_matched",))


def test_missing_task_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no CoLA/ folder"):
        load_glue("cola", tmp_path, splits=("train",))


def test_unknown_label_string_is_a_clear_error(tmp_path):
    write_glue_task(tmp_path, "rte")
    path = tmp_path / "RTE" / "train.tsv"
    path.write_text(path.read_text().replace("\tentailment\n", "\tmaybe\n"))
    with pytest.raises(ValueError, match=r"train\.tsv.*'maybe'.*entailment"):
        load_glue("rte", tmp_path, splits=("train",))


def test_hub_is_used_without_data_dir(monkeypatch):
    calls = []
    fake = datasets.DatasetDict({s: datasets.Dataset.from_dict({"x": [1]}) for s in ("train", "validation", "test")})

    def fake_load_dataset(*args, **kwargs):
        calls.append(args)
        return fake

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_glue("SST-2", splits=("validation",))
    assert calls == [("nyu-mll/glue", "sst2")] and list(loaded) == ["validation"]


# Official GLUE sizes and label counts (see ../shared/data/glue/SOURCES.md).
@pytest.mark.parametrize(
    "name, rows, train_counts",
    [
        ("sst2", {"train": 67349, "validation": 872, "test": 1821}, {"positive": 37569, "negative": 29780}),
        ("mrpc", {"train": 3668, "validation": 408, "test": 1725}, {"equivalent": 2474, "not_equivalent": 1194}),
        ("rte", {"train": 2490, "validation": 277, "test": 3000}, {"entailment": 1249, "not_entailment": 1241}),
        ("wnli", {"train": 635, "validation": 71, "test": 146}, {"entailment": 312, "not_entailment": 323}),
    ],
)
def test_real_files_have_official_sizes(glue_dir, name, rows, train_counts):
    loaded = load_glue(name, glue_dir)
    assert {split: len(ds) for split, ds in loaded.items()} == rows
    names = loaded["train"].features["label"].names
    assert Counter(names[i] for i in loaded["train"]["label"]) == train_counts
    assert all(text for column in get_task(name).text_columns for text in loaded["validation"][column])


def test_real_mrpc_bom_is_stripped(glue_dir):
    row = load_glue("mrpc", glue_dir, splits=("validation",))["validation"][0]
    assert row["label"] == 1 and row["sentence1"].startswith("He said the foodservice pie business")


def test_real_qnli_dev_only(glue_dir):
    dev = load_glue("qnli", glue_dir, splits=("validation",))["validation"]
    assert len(dev) == 5463
    assert Counter(dev["label"]) == {0: 2702, 1: 2761}  # entailment, not_entailment
    with pytest.raises(FileNotFoundError, match="split 'train'"):
        load_glue("qnli", glue_dir)
