"""The `hf-bort` command: each option defined once on a dataclass, and the new `extract` subcommand."""

import dataclasses

import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from hf_bort import Architecture, extract_subnetwork
from hf_bort.cli import build_parser, main
from hf_bort.cli.convert import ConvertArguments
from hf_bort.cli.export import ExportArguments
from hf_bort.cli.extract import ExtractArguments
from tests.conftest import TINY_DIMS, minilm_dir


@pytest.fixture(scope="module")
def parent_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("parent")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY_DIMS)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("command", "arguments"),
    [("convert", ConvertArguments), ("export", ExportArguments), ("extract", ExtractArguments)],
)
def test_every_dataclass_field_is_an_option_with_its_help(command, arguments, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(arguments):
        name = field.name.upper() if field.metadata.get("positional") else f"--{field.name}"
        assert name in help_text, name
        assert " ".join(field.metadata["help"].split()) in help_text


def test_extract_saves_the_same_child_as_the_library(parent_dir, tmp_path, capsys):
    out = tmp_path / "child"
    assert main(["extract", str(parent_dir), str(out), "--architecture", "1,2,16,20", "--as_bort"]) == 0
    assert "BortModel" in capsys.readouterr().out
    saved = AutoModel.from_pretrained(out)
    expected = extract_subnetwork(AutoModel.from_pretrained(parent_dir), Architecture(1, 2, 16, 20), as_bort=True)
    assert type(saved).__name__ == "BortModel"
    for (name, ours), (_, theirs) in zip(saved.state_dict().items(), expected.state_dict().items(), strict=True):
        assert torch.equal(ours, theirs), name
    assert (out / "tokenizer.json").is_file()


def test_extract_a_per_layer_child_with_heads_of_the_parents_width(parent_dir, tmp_path, capsys):
    """`--architecture D,A,H,I,head_dim --allocation importance`: a heterogeneous Bort, the library's student."""
    out = tmp_path / "child"
    argv = ["extract", str(parent_dir), str(out), "--architecture", "2,1,32,20,8", "--allocation", "importance"]
    assert main(argv) == 0
    saved = AutoModel.from_pretrained(out)
    expected = extract_subnetwork(
        AutoModel.from_pretrained(parent_dir), Architecture(2, 1, 32, 20, 8), allocation="importance"
    )
    assert type(saved).__name__ == "BortModel" and saved.config.head_dim == 8
    assert [layer.attention.self.num_attention_heads for layer in saved.encoder.layer] == [1, 1]
    for (name, ours), (_, theirs) in zip(saved.state_dict().items(), expected.state_dict().items(), strict=True):
        assert torch.equal(ours, theirs), name


def test_extract_bad_input_is_one_clear_line(parent_dir, tmp_path, capsys):
    assert main(["extract", str(parent_dir), str(tmp_path / "c"), "--architecture", "1,2,16"]) == 2
    assert "must be four integers depth,heads,hidden,intermediate" in capsys.readouterr().err
    assert main(["extract", str(parent_dir), str(tmp_path / "c")]) == 2
    assert "Pass exactly one of --architecture" in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "nowhere"), str(tmp_path / "c"), "--architecture", "1,2,16,20"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
