"""The pool samplers (real unlabelled rows nearest to Agora's dev errors; the uncertainty and random baselines), the
label budget, teacher-row weights, and their bad inputs. Tiny random BERTs on real GLUE rows."""

import json
import os

import datasets
import numpy as np
import pytest
import torch
from transformers import BertModel

from hf_bort.agora import (
    SAMPLERS,
    AgoraArguments,
    AgoraDataCollator,
    AgoraTrainer,
    PoolSampler,
    RandomPoolSampler,
    UncertaintyPoolSampler,
    build_sampler,
    carve_dev_split,
)
from hf_bort.agora.pool import _nearest_in_proportion, nearest_rows
from hf_bort.agora.samplers import row_key
from hf_bort.glue import load_glue
from tests.conftest import GLUE_DIR
from tests.test_agora import agora_args, tiny_classifier


PAIR = ("sentence1", "sentence2")


@pytest.fixture(scope="module")
def rte_rows():
    """120 RTE train pairs: 40 for the run (train and Agora dev split), the other 80 as the unlabelled pool."""
    rows = load_glue("rte", GLUE_DIR, ("train",))["train"].select(range(120))
    split = carve_dev_split(rows.select(range(40)), 0.25, seed=0)
    pool = rows.select(range(40, 120)).remove_columns(["label", "idx"])
    return {"train": split["train"], "dev": split["dev"], "pool": pool}


def _prepared(sampler, known=(), held_out=(), min_rows=1, columns=PAIR):
    sampler.prepare(
        text_columns=columns,
        known_rows={row_key(r) for r in known},
        held_out_rows={row_key(r) for r in held_out},
        min_rows=min_rows,
    )
    return sampler


def _reference_embedding(model, tokenizer, row):
    """Mean of the last hidden states of one row on its own (no batch, no padding), unit length."""
    encoded = tokenizer(*row, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**encoded).last_hidden_state[0]
    return torch.nn.functional.normalize(hidden.mean(0), dim=-1).numpy()


def _greedy_in_turns(similarity: np.ndarray, k: int) -> list[list[int]]:
    """Brute force: every query's full ranking, then k turns of each taking its best row not yet taken."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    taken, out = set(), [[] for _ in order]
    for _ in range(k):
        for q, ranking in enumerate(order):
            row = next((int(r) for r in ranking if int(r) not in taken), None)
            if row is not None:
                taken.add(row)
                out[q].append(row)
    return out


def test_pool_neighbours_equal_a_brute_force_search_in_the_student_space(rte_rows, tokenizer):
    student = tiny_classifier(0).eval()
    pool_rows = list(zip(*(rte_rows["pool"][c] for c in PAIR)))
    errors = list(zip(*(rte_rows["dev"][c] for c in PAIR)))[:3]
    reference_pool = np.stack([_reference_embedding(student, tokenizer, r) for r in pool_rows])
    reference_errors = np.stack([_reference_embedding(student, tokenizer, r) for r in errors])
    expected = _greedy_in_turns(reference_errors @ reference_pool.T, 5)
    for index in ("exact", "faiss"):
        sampler = _prepared(PoolSampler(rte_rows["pool"], student, tokenizer, max_length=32, index=index))
        found = sampler.sample(errors, 5, torch.Generator().manual_seed(0))
        assert found == [[pool_rows[i] for i in rows] for rows in expected], index
    # one error: exactly its 5 nearest pool rows, by cosine
    alone = sampler.sample(errors[:1], 5, torch.Generator())[0]
    assert alone == [pool_rows[i] for i in np.argsort(-(reference_errors[0] @ reference_pool.T))[:5]]
    # rows already in the training set are excluded at every call; the next nearest take their place
    again = sampler.sample(errors[:1], 5, torch.Generator(), exclude=set(alone[:2]))[0]
    assert again[:3] == alone[2:] and not set(again) & set(alone[:2])


def test_errors_take_their_neighbours_in_turns_and_a_row_serves_one_error():
    pool = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0], [0.2, 0.9]]), dim=-1
    )
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.95, 0.0]]), dim=-1)
    everything = torch.ones(5, dtype=torch.bool)
    # both queries are nearest to row 0: the first takes it, the second its next (row 1), then row 2, then 4
    assert nearest_rows(queries, pool, 2, everything) == [[0, 2], [1, 4]]
    assert nearest_rows(queries, pool, 2, everything, "faiss") == [[0, 2], [1, 4]]
    available = torch.tensor([True, False, True, True, True])  # row 1 is in the training set already
    assert nearest_rows(queries, pool, 3, available) == [[0, 4], [2, 3]]  # the pool runs out: fewer rows, no repeats
    assert nearest_rows(queries, pool, 5, torch.zeros(5, dtype=torch.bool)) == [[], []]


def test_balanced_draws_split_the_rows_over_the_classes_in_the_pools_proportions():
    pool = torch.nn.functional.normalize(
        torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.3], [0.0, 1.0], [0.2, 0.9]]), dim=-1
    )
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.95, 0.0]]), dim=-1)
    classes = torch.tensor([0, 0, 0, 1, 1])
    everything = torch.ones(5, dtype=torch.bool)
    # 4 rows at 3:2 (2.4 and 1.6): the turns' classes are 0, 1 | 0, 1, rotated in the second rank to 1, 0. Class 0:
    # the first query (rank 0) takes row 0, the second (rank 1) row 1; class 1: the second query, whose turn comes
    # first (rank 0), takes its nearest, row 4, and the first row 3
    assert _nearest_in_proportion(queries, pool, 2, everything, "exact", classes) == [[0, 3], [4, 1]]
    # unbalanced, the same queries take rows 0, 1, 2 of class 0 and one of class 1
    assert nearest_rows(queries, pool, 2, everything) == [[0, 2], [1, 4]]
    # the proportions are those of the rows still available: rows 1 and 2 are in train, 1 of class 0 : 2 of class 1,
    # so the first turn goes to class 1
    available = torch.tensor([True, False, False, True, True])
    assert _nearest_in_proportion(queries, pool, 1, available, "exact", classes) == [[4], [0]]
    assert _nearest_in_proportion(queries, pool, 2, ~everything, "exact", classes) == [[], []]  # nothing left
    sampler = PoolSampler(
        datasets.Dataset.from_dict({"text": ["a", "b"]}), encoder=torch.nn.Linear(1, 1), encoder_tokenizer=object()
    )
    sampler.rows = [("a",), ("b",)]
    with pytest.raises(ValueError, match=r"balance_by needs one class per usable pool row \(2\), got shape \(3,\)"):
        sampler.balance_by([0, 1, 1])


def test_agora_balances_pool_rows_by_the_teachers_labels_of_the_pool(tmp_path, rte_rows, tokenizer):
    def teacher(rows):  # a scripted teacher: label 1 for 29% of the pool
        return [int(len(first) % 3 == 0) for first, _ in rows]

    def run(balance: bool) -> AgoraTrainer:
        trainer = AgoraTrainer(
            model=tiny_classifier(0),
            args=agora_args(
                tmp_path, agora_rounds=2, agora_sampler="pool", agora_label_budget=8, agora_pool_balance=balance
            ),
            train_dataset=rte_rows["train"].select(range(16)),
            agora_dev_dataset=rte_rows["dev"],
            agora_pool=rte_rows["pool"],
            teacher=teacher,
            processing_class=tokenizer,
        )
        trainer.train()
        return trainer

    balanced = run(True)
    expected = teacher(balanced.agora_sampler.rows)
    assert balanced.agora_sampler.row_classes.tolist() == expected  # the teacher's labels of every usable pool row
    share = 8 * np.mean(expected)  # 2.3 of the 8 rows
    assert sum(balanced.agora_generated["label"]) == round(share)
    assert sum(run(False).agora_generated["label"]) == 5  # unbalanced, the rows nearest the errors: 5 of 8
    for bad in ({"agora_sampler": "pool_random"}, {"agora_sampler": "embedding_neighbours"}):
        with pytest.raises(ValueError, match=r"agora_pool_balance draws the 'pool' sampler's rows .* needs"):
            AgoraTrainer(
                model=tiny_classifier(0),
                args=agora_args(tmp_path, agora_pool_balance=True, **bad),
                train_dataset=rte_rows["train"].select(range(16)),
                agora_dev_dataset=rte_rows["dev"],
                **({"agora_pool": rte_rows["pool"]} if bad["agora_sampler"] == "pool_random" else {}),
                teacher=teacher,
                processing_class=tokenizer,
            )


def test_a_fixed_encoder_embeds_the_pool_once_the_student_space_at_every_expansion(rte_rows, tokenizer):
    student = tiny_classifier(0)
    pool_rows = list(zip(*(rte_rows["pool"][c] for c in PAIR)))
    errors = pool_rows[:2]
    moving = _prepared(PoolSampler(rte_rows["pool"], student, tokenizer, max_length=32), known=errors)
    before = moving.sample(errors, 4, torch.Generator())
    with torch.no_grad():
        for parameter in student.bert.encoder.parameters():
            parameter.add_(torch.randn_like(parameter))  # training moved the student's space
    after = moving.sample(errors, 4, torch.Generator())
    assert before != after and student.training  # re-embedded, and the student's mode is restored
    encoder = BertModel(tiny_classifier(2).config)
    fixed = _prepared(PoolSampler(rte_rows["pool"], encoder=encoder, encoder_tokenizer=tokenizer, max_length=32))
    first = fixed.sample(errors, 4, torch.Generator())
    vectors = fixed.pool_embeddings
    assert fixed.sample(errors, 4, torch.Generator()) == first and fixed.pool_embeddings is vectors
    given = PoolSampler(
        rte_rows["pool"], encoder=encoder, encoder_tokenizer=tokenizer, embeddings=vectors.numpy(), max_length=32
    )
    assert _prepared(given).sample(errors, 4, torch.Generator()) == first  # precomputed vectors, same rows


def _teacher_space_trainer(tmp_path, rows, teacher, sampler: str = "pool") -> AgoraTrainer:
    return AgoraTrainer(
        model=tiny_classifier(0),
        args=agora_args(tmp_path, agora_sampler=sampler, agora_pool_space="teacher"),
        train_dataset=rows["train"],
        agora_dev_dataset=rows["dev"],
        agora_pool=rows["pool"],
        teacher=teacher,
        processing_class=rows["tokenizer"],
    )


def test_the_teacher_space_finds_the_errors_nearest_rows_by_the_teachers_states(tmp_path, rte_rows, tokenizer):
    """agora_pool_space='teacher': the sampler's rows are the brute-force nearest pool rows of each error by the
    teacher's mean-pooled states (not the student's), and the pool is embedded once."""
    teacher = tiny_classifier(1).eval()
    rows = {**rte_rows, "tokenizer": tokenizer}
    sampler = _teacher_space_trainer(tmp_path, rows, teacher).agora_sampler
    pool_rows = list(zip(*(rte_rows["pool"][c] for c in PAIR)))
    errors = list(zip(*(rte_rows["dev"][c] for c in PAIR)))[:3]
    reference_pool = np.stack([_reference_embedding(teacher, tokenizer, r) for r in pool_rows])
    reference_errors = np.stack([_reference_embedding(teacher, tokenizer, r) for r in errors])
    expected = [[pool_rows[i] for i in rows] for rows in _greedy_in_turns(reference_errors @ reference_pool.T, 5)]
    assert sampler.sample(errors, 5, torch.Generator()) == expected
    vectors = sampler.pool_embeddings
    assert sampler.sample(errors, 5, torch.Generator()) == expected and sampler.pool_embeddings is vectors
    student_space = _prepared(PoolSampler(rte_rows["pool"], tiny_classifier(0), tokenizer, max_length=32))
    assert student_space.sample(errors, 5, torch.Generator()) != expected
    with pytest.raises(
        ValueError, match=r"agora_pool_space='teacher' sets the 'pool' sampler's space, but the sampler is"
    ):
        _teacher_space_trainer(tmp_path, rows, teacher, sampler="pool_random")
    with pytest.raises(ValueError, match=r"but the teacher is a callable, which has no hidden states"):
        _teacher_space_trainer(tmp_path, rows, lambda texts: [0] * len(texts))
    with pytest.raises(ValueError, match=r"agora_pool_space='nearby'; choose one of \['student', 'teacher'\]"):
        AgoraArguments("unused", agora_pool_space="nearby")


def test_the_uncertainty_baseline_takes_the_smallest_margins_and_random_draws_reproducibly(rte_rows, tokenizer):
    student = tiny_classifier(0).eval()
    pool_rows = list(zip(*(rte_rows["pool"][c] for c in PAIR)))
    known = pool_rows[:10]
    sampler = _prepared(UncertaintyPoolSampler(rte_rows["pool"], student, tokenizer, max_length=32), known=known)
    assert sampler.left_out == {"given": 80, "in_train_dev_or_selection": 10, "duplicates": 0}
    found = sampler.sample([("a", "b"), ("c", "d")], 3, torch.Generator(), exclude={pool_rows[10]})
    flat = [row for turn in zip(*found) for row in turn]  # taken in turns: back in the sampler's order
    margins = {}
    for row in pool_rows[11:]:
        encoded = tokenizer(*row, truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            top = student(**encoded).logits.softmax(-1)[0].topk(2).values
        margins[row] = float(top[0] - top[1])
    assert flat == sorted(margins, key=margins.get)[:6] and not UncertaintyPoolSampler.targeted
    drawn = _prepared(RandomPoolSampler(rte_rows["pool"]), known=known)
    one = drawn.sample([("a", "b")] * 3, 4, torch.Generator().manual_seed(5))
    assert one == drawn.sample([("a", "b")] * 3, 4, torch.Generator().manual_seed(5))
    rows = [row for part in one for row in part]
    assert len(set(rows)) == 12 and not set(rows) & set(known)


def test_agora_spends_its_label_budget_on_pool_rows_near_the_errors(tmp_path, rte_rows, tokenizer):
    trainer = AgoraTrainer(
        model=tiny_classifier(0),
        args=agora_args(tmp_path, agora_rounds=3, agora_sampler="pool", agora_label_budget=9),
        train_dataset=rte_rows["train"].select(range(16)),
        agora_dev_dataset=rte_rows["dev"],
        agora_pool=rte_rows["pool"],
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
    )
    trainer.train()
    history = trainer.agora_history
    assert [r.labelled for r in history] == [4, 5, 0]  # 9 // 2, then the 5 left; none after the last round
    assert trainer.agora_state.labels_spent == 9 == len(trainer.agora_generated)
    generated = trainer.agora_generated
    pool_rows = set(zip(*(rte_rows["pool"][c] for c in PAIR)))
    assert set(zip(*(generated[c] for c in PAIR))) <= pool_rows  # real pool rows, not edits
    for record, round_index in zip(history[:2], (1, 2)):
        sources = [s for s, r in zip(generated["agora_source_index"], generated["agora_round"]) if r == round_index]
        assert len(sources) == record.kept and set(sources) <= set(range(len(rte_rows["dev"])))
        labels = [y for y, r in zip(generated["label"], generated["agora_round"]) if r == round_index]
        dev_labels = [rte_rows["dev"][s]["label"] for s in sources]
        assert record.teacher_agreement == pytest.approx(np.mean(np.equal(labels, dev_labels)))


def test_teacher_rows_are_weighted_in_the_loss(tmp_path, rte_rows, tokenizer):
    features = [
        {"sentence1": "a cat", "sentence2": "a dog", "label": 0, "agora_round": 0, "agora_teacher_confidence": 1.0},
        {"sentence1": "it rains", "sentence2": "wet", "label": 1, "agora_round": 2, "agora_teacher_confidence": 0.6},
    ]
    for weight, expected in ((0.5, [1.0, 0.5]), ("confidence", [1.0, 0.6])):
        trainer = AgoraTrainer(
            model=tiny_classifier(0),
            args=agora_args(tmp_path, teacher_row_weight=str(weight)),
            train_dataset=rte_rows["train"],
            agora_dev_dataset=rte_rows["dev"],
            teacher=tiny_classifier(1),
            processing_class=tokenizer,
        )
        assert trainer.args.agora_row_weight == weight
        trainer.model.eval()  # no dropout: the loss is compared with one computed by hand
        batch = trainer.data_collator(features)
        assert batch["row_weight"].tolist() == pytest.approx(expected)
        loss = trainer.compute_loss(trainer.model, dict(batch))
        with torch.no_grad():
            logits = trainer.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}).logits
        per_row = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
        assert float(loss) == pytest.approx(float((torch.tensor(expected) * per_row).mean()), rel=1e-5)
    plain = AgoraDataCollator(tokenizer, PAIR)(features)  # weight 1 (the default): no weights, the model's own loss
    assert "row_weight" not in plain


# ----- bad input -----


def test_a_pool_without_a_text_column_is_refused(rte_rows):
    sampler = RandomPoolSampler(datasets.Dataset.from_dict({"text": ["a"], "score": [1]}))
    with pytest.raises(
        ValueError,
        match=r"has no text columns for the task's \['sentence1', 'sentence2'\] \(its columns: \['text', 'score'\]\): name them with pool_columns",
    ):
        _prepared(sampler)


def test_a_pool_smaller_than_k_is_refused(rte_rows, tokenizer):
    small = rte_rows["pool"].select(range(5))
    known = list(zip(*(small[c] for c in PAIR)))[:2]
    with pytest.raises(
        ValueError,
        match=r"has 3 usable rows \(5 given; 2 equal to train, dev or selection rows and 0 duplicates left out\), fewer than the 4",
    ):
        _prepared(RandomPoolSampler(small), known=known, min_rows=4)


def test_an_encoder_whose_tokenizer_is_missing_is_refused(tmp_path, rte_rows):
    BertModel(tiny_classifier(0).config).save_pretrained(tmp_path / "encoder")  # weights and config, no tokenizer
    with pytest.raises(ValueError, match=r"encoder .*encoder has no usable tokenizer .*tokenizer.save_pretrained"):
        PoolSampler(rte_rows["pool"], encoder=str(tmp_path / "encoder"))


def test_a_pool_holding_official_dev_rows_is_refused(tmp_path, rte_rows, tokenizer):
    official = load_glue("rte", GLUE_DIR, ("validation",))["validation"]
    leaky = datasets.concatenate_datasets([rte_rows["pool"], official.select([7]).remove_columns(["label", "idx"])])
    with pytest.raises(
        ValueError, match=r"holds 1 row\(s\) of the held-out set the model is scored on, e\.g\. .* leak the test"
    ):
        AgoraTrainer(
            model=tiny_classifier(0),
            args=agora_args(tmp_path, agora_sampler="pool"),
            train_dataset=rte_rows["train"],
            agora_dev_dataset=rte_rows["dev"],
            agora_pool=leaky,
            agora_held_out_dataset=official,
            teacher=tiny_classifier(1),
            processing_class=tokenizer,
        )


def test_pool_arguments_that_do_not_fit_are_refused(tmp_path, rte_rows, tokenizer):
    common = dict(
        student=tiny_classifier(0), student_tokenizer=tokenizer, replace_fraction=0.2, num_neighbours=3, max_length=16
    )
    assert {"pool", "pool_uncertainty", "pool_random"} <= set(SAMPLERS)
    with pytest.raises(ValueError, match="An Agora pool is given but the 'embedding_neighbours' sampler uses none"):
        build_sampler("embedding_neighbours", **common, pool=rte_rows["pool"])
    with pytest.raises(ValueError, match=r"The 'pool' sampler needs an unlabelled pool: --agora_pool FILE"):
        build_sampler("pool", **common)
    pairs = tmp_path / "pool.txt"
    pairs.write_text("first\tsecond\nonly one text\n")
    with pytest.raises(ValueError, match=r"pool.txt line 2 has 1 tab-separated text\(s\); the task's rows have 2"):
        _prepared(build_sampler("pool_random", **common, pool=str(pairs)))
    with pytest.raises(ValueError, match=r"teacher_row_weight='heavy': give a positive number .* or 'confidence'"):
        AgoraArguments("unused", teacher_row_weight="heavy")
    with pytest.raises(ValueError, match=r"agora_label_budget=-1 is out of range"):
        AgoraArguments("unused", agora_label_budget=-1)
    vectors = np.zeros((3, 8))
    sampler = PoolSampler(
        rte_rows["pool"], encoder=BertModel(tiny_classifier(0).config), encoder_tokenizer=tokenizer, embeddings=vectors
    )
    with pytest.raises(
        ValueError, match=r"embeddings has shape \(3, 8\); it needs one row per pool row as given \(80\)"
    ):
        _prepared(sampler)


def test_nothing_the_user_passed_is_modified_on_disk(tmp_path, rte_rows, tokenizer):
    pool_file = tmp_path / "pool" / "unlabelled.jsonl"
    pool_file.parent.mkdir()
    pool_file.write_text(
        "".join(json.dumps(dict(zip(PAIR, row))) + "\n" for row in zip(*(rte_rows["pool"][c] for c in PAIR)))
    )
    before = (pool_file.read_bytes(), os.stat(pool_file).st_mtime_ns, sorted(os.listdir(pool_file.parent)))
    saved = tmp_path / "saved_pool"
    rte_rows["pool"].save_to_disk(saved)
    disk_pool = datasets.load_from_disk(saved)
    snapshot = {p.name: p.read_bytes() for p in saved.iterdir()}
    trainer = AgoraTrainer(
        model=tiny_classifier(0),
        args=agora_args(tmp_path, agora_sampler="pool", agora_sampler_kwargs='{"index": "faiss"}'),
        train_dataset=rte_rows["train"].select(range(16)),
        agora_dev_dataset=rte_rows["dev"],
        agora_pool=str(pool_file),
        teacher=tiny_classifier(1),
        processing_class=tokenizer,
    )
    trainer.train()
    assert len(trainer.agora_generated) > 0
    sampler = _prepared(PoolSampler(disk_pool, tiny_classifier(0), tokenizer, max_length=32, index="faiss"))
    assert len(sampler.sample([("a", "b")], 3, torch.Generator())[0]) == 3
    assert (pool_file.read_bytes(), os.stat(pool_file).st_mtime_ns, sorted(os.listdir(pool_file.parent))) == before
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == snapshot
    assert disk_pool.list_indexes() == [] and disk_pool.column_names == list(PAIR)


def test_the_pool_index_benchmark_compares_torch_and_faiss_on_the_same_rows(tmp_path):
    """benchmarks/agora_pool_index.py --quick: both searches return the same rows (checked inside), and are timed."""
    import sys

    from tests.conftest import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks import agora_pool_index

    agora_pool_index.main(["--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "index.json").read_text())
    assert [row["queries"] for row in result["search"]] == [1, 64] and result["threads"] == 1
    for row in result["search"]:
        assert row["pool_rows"] == 2000 and all(row[key] > 0 for key in row if key.endswith("_s"))
