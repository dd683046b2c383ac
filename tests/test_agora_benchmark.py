"""`benchmarks/agora_glue.py --quick`: every arm runs with the same steps and the same teacher-labelled rows."""

import json
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_gives_every_arm_the_same_budget(tmp_path, minilm_path, glue_dir):
    pytest.importorskip("nlpaug")
    sys.path.insert(0, str(REPO))
    from benchmarks import agora_glue
    from hf_bort.glue import get_task

    teacher = tmp_path / "teacher"  # an untrained stand-in: the quick run checks the plumbing, not accuracy
    agora_glue.extract_student(get_task("sst2"), 1, 0).save_pretrained(teacher)
    agora_glue.AutoTokenizer.from_pretrained(minilm_path).save_pretrained(teacher)
    out = tmp_path / "quick.json"
    agora_glue.main(
        ["--quick", "--teacher", str(teacher), "--allow-weak-teacher", "--no-bars", "--data-dir", str(glue_dir)]
        + ["--out", str(out), "--plots"]
    )
    (result,) = json.loads(out.read_text())["results"]
    arms = result["arms"]
    assert set(arms) == set(agora_glue.ARMS) and result["student_rows"] == 60
    steps, labelled = arms["agora"]["steps"], arms["agora"]["labelled_rows"]
    assert steps > 0 and labelled == sum(r["kept"] for r in result["history"])
    assert all(arms[arm]["steps"] == steps for arm in ("plain", "non_targeted", "eda", "kd"))
    assert arms["plain"]["labelled_rows"] == 0
    assert arms["non_targeted"]["labelled_rows"] == arms["eda"]["labelled_rows"] == labelled
    assert arms["kd"]["labelled_rows"] == labelled + 60  # the pool and the real rows carry soft labels
    assert arms["agora_theta"]["total_steps"] >= arms["agora_theta"]["steps"] > 0
    assert len(result["history_theta"][0]["settings"]) == 2  # Θ = two learning rates, halved to one
    assert all(0 <= arms[arm]["accuracy"] <= 1 for arm in arms)
    summary = out.with_suffix(".txt").read_text()
    assert all(arm in summary for arm in agora_glue.ARMS)
    for png in (tmp_path / "quick_arms.png", tmp_path / "quick_rounds_sst2_seed0.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --report merges finished runs without training: the same table, with agora_theta's paired gain per arm
    merged = tmp_path / "merged.json"
    agora_glue.main(["--report", str(out), "--out", str(merged)])
    assert merged.with_suffix(".txt").read_text() == summary
    gain = (arms["agora_theta"]["accuracy"] - arms["plain"]["accuracy"]) * 100
    assert f"goal agora_theta >= plain + 3: mean gain {gain:+.2f}" in summary
    # a rerun into the same --out reuses the finished seed (nothing retrained, the same numbers); other settings
    # are refused with the names of what differs, and the results stay as they were
    before = out.read_bytes()
    agora_glue.main(
        ["--quick", "--teacher", str(teacher), "--allow-weak-teacher", "--no-bars", "--data-dir", str(glue_dir)]
        + ["--out", str(out)]
    )
    assert json.loads(out.read_text())["results"] == json.loads(before)["results"]
    with pytest.raises(SystemExit, match=r"other settings \(lr\); pass another --out"):
        agora_glue.main(
            ["--quick", "--teacher", str(teacher), "--allow-weak-teacher", "--no-bars", "--data-dir", str(glue_dir)]
            + ["--out", str(out), "--lr", "1e-3"]
        )
    assert out.read_bytes() == before


def test_a_teacher_below_the_bar_on_the_official_dev_set_is_refused(tmp_path):
    """The benchmark's teachers trained on the Agora dev split's rows, so the bar is checked on the official dev set."""
    sys.path.insert(0, str(REPO))
    from benchmarks import agora_glue
    from hf_bort.glue import get_task

    (tmp_path / "teacher_eval.json").write_text(json.dumps({"accuracy": 0.5667}))
    with pytest.raises(SystemExit, match=r"rte teacher scores 0\.567 .* 2/3 bar .* --allow-weak-teacher"):
        agora_glue.check_teacher(get_task("rte"), tmp_path, allow_weak=False)
    agora_glue.check_teacher(get_task("rte"), tmp_path, allow_weak=True)  # the override runs it anyway
    (tmp_path / "teacher_eval.json").write_text(json.dumps({"accuracy": 0.8015}))
    agora_glue.check_teacher(get_task("mrpc"), tmp_path, allow_weak=False)


@pytest.mark.slow
def test_quick_active_comparison_gives_every_arm_the_same_labels_steps_and_splits(tmp_path, minilm_path, glue_dir):
    """`--active --quick`: five arms at a label budget of 12, cached per cell; a rerun trains nothing."""
    sys.path.insert(0, str(REPO))
    from transformers import BertConfig, BertForMaskedLM

    from benchmarks import agora_glue
    from hf_bort.glue import get_task

    teacher, mlm = tmp_path / "teacher", tmp_path / "mlm"  # untrained stand-ins: the plumbing, not accuracy
    tokenizer = agora_glue.AutoTokenizer.from_pretrained(minilm_path)
    agora_glue.extract_student(get_task("sst2"), 1, 0).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    BertForMaskedLM(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    ).save_pretrained(mlm)
    tokenizer.save_pretrained(mlm)
    out, cache = tmp_path / "active.json", tmp_path / "cells"
    argv = ["--quick", "--active", "--teacher", str(teacher), "--allow-weak-teacher", "--no-bars", "--data-dir", str(glue_dir),
            "--cache-dir", str(cache), "--mlm", str(mlm), "--out", str(out)]  # fmt: skip
    agora_glue.main([*argv, "--plots"])
    cells = json.loads(out.read_text())["cells"]
    at = {c["arm"]: c for c in cells}
    assert set(at) == set(agora_glue.ACTIVE_ARMS) and {c["budget"] for c in cells} == {12}
    # the same splits, steps per round and total steps (Θ of 2 settings, halved: 3 trainings) in every arm
    assert len({json.dumps(c["rows"]) for c in cells}) == 1 and at["kd"]["rows"]["pool"] == 300
    assert len({(c["steps_per_round"], c["total_steps"]) for c in cells}) == 1
    assert at["kd"]["total_steps"] == 3 * at["kd"]["steps_per_round"]
    assert at["kd"]["labels_spent"] == 0 and 0 < at["kd_agora_contextual"]["labels_spent"] <= 12
    assert all(at[arm]["labels_spent"] == 12 for arm in ("kd_random", "kd_uncertainty", "kd_agora_pool"))
    assert all(at[arm]["gold_agreement"] is not None for arm in ("kd_random", "kd_uncertainty", "kd_agora_pool"))
    assert at["kd_random"]["source_agreement"] is None and at["kd_agora_pool"]["source_agreement"] is not None
    assert all(c["selected_by"] == "agora_selection" for c in cells)
    for c in cells:  # every trained model's official dev score is kept; the shipped one's is the cell's own score
        shipped = [m for m in c["per_setting"] if [m["round"], m["setting"]] == c["best"]]
        assert len(c["per_setting"]) == 3 and shipped[0]["held_out"] == pytest.approx(c["accuracy"])
    assert sum(at["kd_random"]["added_label_counts"]) == 12 == sum(at["kd_random"]["added_gold_label_counts"])
    assert at["kd"]["added_label_counts"] == []
    summary = out.with_suffix(".txt").read_text()
    assert "kd_agora_pool - kd_random at 12" in summary and "teacher agreement kd_agora_pool" in summary
    assert "selection rules, kd_agora_pool (1 runs" in summary
    share = at["kd_random"]["added_label_counts"][1] / 12
    assert f"label 1 among the rows kd_random added (teacher's labels): {share:.3f}" in summary
    assert (tmp_path / "active_budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a rerun reuses every cell (nothing retrained: the files stay as they were); other settings are refused
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("budget*.json")}
    agora_glue.main(argv)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("budget*.json")} == stamps and len(stamps) == 5
    assert json.loads(out.read_text())["cells"] == cells
    with pytest.raises(SystemExit, match=r"computed with other settings \(lr\); pass another --cache-dir"):
        agora_glue.main([*argv, "--lr", "1e-3"])
    # a cell cached before `revision` and `pool_balance` were recorded ran revision 3, unbalanced: reused as such
    path = cache / "sst2" / "kd_agora_pool" / "budget12_seed0.json"
    cell = json.loads(path.read_text())
    assert cell["settings"]["revision"] == agora_glue.ACTIVE_REVISION and cell["settings"]["pool_balance"] is False
    del cell["settings"]["revision"], cell["settings"]["pool_balance"]
    path.write_text(json.dumps(cell))
    stamps[path] = path.stat().st_mtime_ns
    agora_glue.main([*argv, "--arms", "kd_agora_pool"])
    assert path.stat().st_mtime_ns == stamps[path]  # not trained again
    with pytest.raises(SystemExit, match=r"computed with other settings \(pool_balance\)"):
        agora_glue.main([*argv, "--arms", "kd_agora_pool", "--pool-balance"])
    path.write_text(json.dumps(cell | {"settings": cell["settings"] | {"revision": 2}}))
    with pytest.raises(SystemExit, match=r"computed with other settings \(revision\)"):
        agora_glue.main([*argv, "--arms", "kd_agora_pool"])
    path.write_text(json.dumps(cell))
    stamps[path] = path.stat().st_mtime_ns
    # replace_fraction decides kd_agora_contextual's rows only: the other arms' cells are reused under another
    agora_glue.main([*argv, "--arms", "kd", "kd_agora_pool", "--replace-fraction", "0.5"])
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("budget*.json")} == stamps
    with pytest.raises(SystemExit, match=r"computed with other settings \(replace_fraction\)"):
        agora_glue.main([*argv, "--arms", "kd_agora_contextual", "--replace-fraction", "0.5"])
    # a variant is cached and reported beside the arm it varies; the table keeps every cached cell
    agora_glue.main([*argv, "--arms", "kd_agora_contextual", "--replace-fraction", "0.5", "--variant", "half"])
    assert (cache / "sst2" / "kd_agora_contextual@half" / "budget12_seed0.json").is_file()
    assert [c["arm"] for c in json.loads(out.read_text())["cells"]] == ["kd_agora_contextual@half"]
    summary = out.with_suffix(".txt").read_text()
    assert "kd_agora_contextual@half - kd_random at 12" in summary and "kd_agora_pool - kd_random at 12" in summary
