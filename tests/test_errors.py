"""hf_bort.errors: one line and exit 2 for a failed entry point, the traceback on request, clear model-source
errors, and corrupt safetensors named."""

import pytest
from safetensors import SafetensorError

from hf_bort.errors import check_model_source, check_weights_readable, one_line, readable_weights, run_main


def _failing(error: BaseException):
    def main(argv):
        raise error

    return main


def test_run_main_prints_one_line_and_returns_2(capsys):
    assert run_main(_failing(ValueError("bad --thing; pass a good one.\n  second line")), "prog", ["x"]) == 2
    assert capsys.readouterr().err == (
        "prog: error: bad --thing; pass a good one. second line (run with --debug for the traceback)\n"
    )


def test_run_main_passes_argv_without_debug_and_returns_mains_status():
    seen = []
    assert run_main(lambda argv: seen.append(argv) or 3, "prog", ["a", "b"]) == 3
    assert run_main(lambda argv: None, "prog", []) == 0
    assert seen == [["a", "b"]]


def test_debug_flag_and_environment_re_raise(monkeypatch):
    with pytest.raises(ValueError, match="boom"):
        run_main(_failing(ValueError("boom")), "prog", ["--debug"])
    monkeypatch.setenv("HF_BORT_DEBUG", "1")
    with pytest.raises(ValueError, match="boom"):
        run_main(_failing(ValueError("boom")), "prog", [])


def test_interrupt_exits_130_and_usage_errors_pass_through(capsys):
    assert run_main(_failing(KeyboardInterrupt()), "prog", []) == 130
    assert capsys.readouterr().err == "prog: interrupted\n"
    with pytest.raises(SystemExit) as exit_info:
        run_main(_failing(SystemExit(2)), "prog", [])
    assert exit_info.value.code == 2


def test_one_line_names_the_type_when_the_message_alone_would_not():
    assert one_line(KeyError("label")) == "KeyError: 'label'"
    assert one_line(ValueError("plain")) == "plain"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_check_model_source(tmp_path, monkeypatch):
    (tmp_path / "file.bin").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "bert"}')
    check_model_source(tmp_path / "model")
    with pytest.raises(ValueError, match="teacher .*file.bin' is a file"):
        check_model_source(tmp_path / "file.bin", "teacher")
    with pytest.raises(ValueError, match="has no config.json"):
        check_model_source(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist; pass an existing folder or a Hub id"):
        check_model_source(tmp_path / "no" / "such" / "dir")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="nor in the Hub cache, and HF_HUB_OFFLINE=1"):
        check_model_source("nobody-here/not-a-model-xyz")


def test_readable_weights_names_the_corrupt_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(ValueError, match=r"model weights '.*model.safetensors' is not a valid safetensors file"):
        with readable_weights(tmp_path):
            raise SafetensorError("Error while deserializing header: header too small")
    with readable_weights(tmp_path):  # anything else passes through untouched
        pass
    with pytest.raises(KeyError):
        with readable_weights(tmp_path):
            raise KeyError("other")


def test_check_weights_readable_reads_only_headers_and_names_a_truncated_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"weight": torch.arange(1000.0)}, tmp_path / "model.safetensors")
    check_weights_readable(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=r"parent weights '.*model.safetensors' is not a valid safetensors file"):
        check_weights_readable(tmp_path, "parent")
