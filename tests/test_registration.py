"""Auto-class registration and checkpoints that load where hf_bort is not installed."""

import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

import hf_bort
from hf_bort import BortConfig, BortForSequenceClassification, BortModel


def test_auto_model_from_config_builds_the_released_shape():
    model = AutoModel.from_config(AutoConfig.for_model("bort"))
    assert isinstance(model, BortModel)
    layer = model.encoder.layer[0]
    assert len(model.encoder.layer) == 4
    assert layer.attention.self.num_attention_heads == 8
    assert layer.intermediate.dense.weight.shape == (768, 1024)
    assert model.embeddings.word_embeddings.weight.shape == (50265, 1024)
    assert model.embeddings.position_embeddings.weight.shape == (512, 1024)
    expected = 50265 * 1024 + 512 * 1024 + 2 * 1024  # embeddings + their LayerNorm
    expected += 4 * (4 * (1024 * 1024 + 1024) + 2 * 1024 * 768 + 768 + 1024 + 4 * 1024)  # layers
    assert sum(p.numel() for p in model.parameters()) == expected == 75_106_304


def test_registration_is_idempotent():
    hf_bort.register_bort()
    importlib.reload(importlib.import_module("hf_bort.registration")).register_bort()
    assert isinstance(AutoModel.from_config(BortConfig(hidden_size=32, num_attention_heads=4)), BortModel)


def test_saved_config_records_every_auto_class(tmp_path, tiny_bort_config):
    BortForSequenceClassification(tiny_bort_config).save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"] == "configuration_bort.BortConfig"
    assert auto_map["AutoModel"] == "modeling_bort.BortModel"
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_bort.BortForSequenceClassification"
    assert {p.name for p in tmp_path.iterdir()} >= {"configuration_bort.py", "modeling_bort.py", "model.safetensors"}
    # in a process that has hf_bort, the local classes are used without trust_remote_code
    assert type(AutoModelForSequenceClassification.from_pretrained(tmp_path)) is BortForSequenceClassification


# A pruned student: layer 0 keeps 2 heads and 20 FFN neurons, layer 1 drops its FFN (`per_layer_config`).
HETEROGENEOUS = {0: {"num_attention_heads": 2, "intermediate_size": 20}, 1: {"skip": ["mlp"]}}


@pytest.mark.parametrize("per_layer", [None, HETEROGENEOUS], ids=["uniform", "heterogeneous"])
def test_checkpoint_loads_with_trust_remote_code_without_hf_bort(tmp_path, tiny_bort_config, per_layer):
    torch.manual_seed(0)
    if per_layer:
        tiny_bort_config = BortConfig.from_dict({**tiny_bort_config.to_dict(), "per_layer_config": per_layer})
    model = BortForSequenceClassification(tiny_bort_config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    input_ids = torch.tensor([[0, 5, 17, 42, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        expected = model(input_ids, attention_mask=mask).logits
    torch.save({"input_ids": input_ids, "mask": mask, "expected": expected}, tmp_path / "io.pt")
    # -I -S: no PYTHONPATH, no working directory, no .pth files (so no editable install of hf_bort); only the
    # plain site-packages directories, where transformers and torch live.
    site_dirs = [p for p in sys.path if p.endswith("site-packages")]
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.extend({site_dirs!r})
        import importlib.util, torch
        assert importlib.util.find_spec("hf_bort") is None, "hf_bort must not be importable here"
        from transformers import AutoModel, AutoModelForSequenceClassification
        io = torch.load({str(tmp_path / "io.pt")!r})
        clf = AutoModelForSequenceClassification.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True)
        assert type(clf).__name__ == "BortForSequenceClassification", type(clf)
        assert "hf_bort" not in type(clf).__module__ and "hf_bort" not in sys.modules
        with torch.no_grad():
            got = clf.eval()(io["input_ids"], attention_mask=io["mask"]).logits
        assert torch.allclose(got, io["expected"], atol=1e-6), (got, io["expected"])
        base = AutoModel.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True)
        assert type(base).__name__ == "BortModel"
        print("REMOTE_CODE_OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE_CODE_OK" in result.stdout
