"""benchmarks/ose_fidelity.py --quick: the ranking benchmark end to end on a tiny parent, and its resumable cache."""

import importlib.util
import json
import math

import pytest
from scipy import stats

from tests.conftest import REPO_ROOT


@pytest.fixture
def fidelity():
    spec = importlib.util.spec_from_file_location("ose_fidelity", REPO_ROOT / "benchmarks" / "ose_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_fidelity_ranks_three_candidates_and_resumes_from_its_cache(fidelity, tmp_path, monkeypatch):
    output = tmp_path / "fidelity.json"
    summary = fidelity.main(["--quick", "--cache_dir", str(tmp_path / "cache"), "--output", str(output)])
    rows = summary["rows"]
    assert len(rows) == 3 and len(list((tmp_path / "cache" / "quick").glob("*-seed0.json"))) == 3
    assert all(0 <= r["accuracy"] <= 1 and math.isfinite(r["error"]) for r in rows)
    # The printed correlations are scipy's, between -ê (or -params, -FLOPs) and the accuracy.
    accuracy = [r["accuracy"] for r in rows]
    tau = stats.kendalltau([-r["error"] for r in rows], accuracy).statistic
    reported = summary["correlations"]["-ê (held-out)"]["kendall_tau"]
    assert reported is None if math.isnan(tau) else reported == pytest.approx(tau)
    assert json.loads(output.read_text()) == json.loads(json.dumps(summary))

    # A rerun trains nothing: every candidate's accuracy and every estimate come from the cache.
    monkeypatch.setattr(fidelity, "train_and_score", lambda *a, **k: pytest.fail("retrained a cached candidate"))
    monkeypatch.setattr(fidelity.OSESearch, "estimate", lambda *a, **k: pytest.fail("re-estimated"))
    again = fidelity.main(["--quick", "--cache_dir", str(tmp_path / "cache")])
    assert again["rows"] == rows
