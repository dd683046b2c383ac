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
