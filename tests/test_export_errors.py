"""``avfed export`` refuses bad command lines with one ``error:`` line and exit code 2."""

import pytest
import torch
from safetensors.torch import save_file

from avfed import models
from avfed.cli import main

TINY = ["resnet10_cifar", "--input-shape", "3,8,8", "--arg", "width=8"]


def _export(tmp_path, *argv):
    model, *options = argv
    return main(["export", model, str(tmp_path / "m.onnx"), *options])


def _error(capsys) -> str:
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out  # no traceback
    return lines[0]


def _save(path, model, prefix=""):
    save_file({prefix + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


@pytest.mark.parametrize(("shape", "expected"), [
    ("3,8", "bad --input-shape '3,8': 2 sizes; expected C,H,W"),
    ("3,8,8,8,8", "bad --input-shape '3,8,8,8,8': 5 sizes"),
    ("3,0,8", "every size must be >= 1"),
    ("3,-8,8", "every size must be >= 1"),
    ("3,x,8", "bad --input-shape '3,x,8'"),
    # four sizes are a clip: the 2-D backbone cannot run on it
    ("3,4,8,8", "--input-shape 3,4,8,8 does not run through resnet10_cifar: Expected 3D"),
])
def test_bad_input_shapes(tmp_path, capsys, shape, expected):
    assert _export(tmp_path, "resnet10_cifar", "--input-shape", shape) == 2
    assert expected in _error(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_video_backbone_needs_a_clip_shape(tmp_path, capsys):
    assert _export(tmp_path, "r3d_10", "--input-shape", "3,8,8", "--arg", "width=8") == 2
    assert "--input-shape 3,8,8 does not run through r3d_10" in _error(capsys)


@pytest.mark.parametrize(("arg", "expected"), [
    ("widht=8", "bad --arg widht: model resnet10_cifar takes no argument 'widht'; "
                "its arguments: width"),
    ("width=abc", "bad --arg width='abc': model resnet10_cifar expects int for 'width', "
                  "got str"),
    ("width=2.5", "expects int for 'width', got float"),
    ("width=", "bad --arg 'width=': no value after '='"),
    ("width=[1,", "bad --arg 'width=[1,': not a value"),
    ("width", "bad --arg 'width': expected key=value"),
    ("in_chans=1", "the input channels are the first size of --input-shape"),
    ("width=0", "width must be >= 1"),  # a value check of the model itself
])
def test_bad_model_args(tmp_path, capsys, arg, expected):
    assert _export(tmp_path, "resnet10_cifar", "--input-shape", "3,8,8", "--arg", arg) == 2
    assert expected in _error(capsys)


def test_model_arg_types_follow_the_annotations(tmp_path, capsys):
    base = ["audio_inceptionnext_tiny", "--input-shape", "1,16,16", "--arg", "width=8"]
    assert _export(tmp_path, *base, "--arg", "depths=[1,a,1,1]") == 2
    assert "expects a list of int for 'depths'" in _error(capsys)
    assert _export(tmp_path, "mm_resnet10_cifar", "--input-shape", "3,8,8",
                   "--arg", "modalities={image: x}") == 2
    assert "expects a mapping of str to int or null for 'modalities'" in _error(capsys)


def test_a_factory_taking_kwargs_accepts_any_name(monkeypatch):
    from avfed.export import check_model_args

    def open_ended(in_chans: int = 3, **kwargs: object) -> torch.nn.Module:
        return torch.nn.Identity()

    monkeypatch.setattr(models.model_registry, "get", lambda name: open_ended)
    check_model_args("open_ended", {"in_chans": 1, "anything": [1, 2]})
    with pytest.raises(ValueError, match="expects int for 'in_chans', got str"):
        check_model_args("open_ended", {"in_chans": "1"})


def test_unknown_model(tmp_path, capsys):
    assert _export(tmp_path, "no_such_model") == 2
    assert "unknown model 'no_such_model'; valid names: " in _error(capsys)


def test_missing_and_unreadable_checkpoints(tmp_path, capsys):
    assert _export(tmp_path, *TINY, "--checkpoint", str(tmp_path / "gone.safetensors")) == 2
    assert f"--checkpoint {tmp_path / 'gone.safetensors'} not found" in _error(capsys)
    assert _export(tmp_path, *TINY, "--checkpoint", str(tmp_path)) == 2
    assert "is not a file" in _error(capsys)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    assert _export(tmp_path, *TINY, "--checkpoint", str(junk)) == 2
    assert f"--checkpoint {junk} is not a readable safetensors file" in _error(capsys)


def test_mismatching_checkpoints_name_the_tensors(tmp_path, capsys):
    wider = _save(tmp_path / "wide.safetensors", models.create("resnet10_cifar", width=16))
    assert _export(tmp_path, *TINY, "--checkpoint", wider) == 2
    message = _error(capsys)
    assert f"--checkpoint {wider} does not fit resnet10_cifar: " in message
    assert " with other shapes (stem.0.weight: checkpoint [16, 3, 3, 3], " \
           "model [8, 3, 3, 3]" in message

    state = models.create("resnet10_cifar", width=8).state_dict()
    dropped = sorted(state)[:3]
    partial = {k: v.contiguous() for k, v in state.items() if k not in dropped}
    partial["extra.weight"] = torch.zeros(2)
    save_file(partial, str(tmp_path / "partial.safetensors"))
    assert _export(tmp_path, *TINY, "--checkpoint", str(tmp_path / "partial.safetensors")) == 2
    message = _error(capsys)
    assert "missing 3 tensors (" in message and all(k in message for k in dropped)
    assert "1 tensors it does not have (extra.weight)" in message

    # the channels of --input-shape must be those the checkpoint was trained with
    rgb = _save(tmp_path / "rgb.safetensors", models.create("resnet10_cifar", width=8))
    assert _export(tmp_path, "resnet10_cifar", "--input-shape", "1,8,8", "--arg", "width=8",
                   "--checkpoint", rgb) == 2
    assert "stem.0.weight: checkpoint [8, 3, 3, 3], model [8, 1, 3, 3]" in _error(capsys)


def test_output_that_cannot_be_written(tmp_path, capsys):
    pytest.importorskip("onnx")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["export", *TINY[:1], str(blocker / "m.onnx"), *TINY[1:], "--no-check"]) == 2
    assert f"cannot write output {blocker / 'm.onnx'}: {blocker} is a file" in _error(capsys)
    assert main(["export", *TINY[:1], str(tmp_path), *TINY[1:], "--no-check"]) == 2
    assert f"output {tmp_path} is a folder" in _error(capsys)
    assert list(tmp_path.iterdir()) == [blocker]  # nothing half-written


def test_good_exports_still_succeed(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    ssl_run = _save(tmp_path / "final.safetensors", models.create("resnet10_cifar", width=8),
                    prefix="backbone.")
    assert _export(tmp_path, *TINY, "--checkpoint", ssl_run, "--deploy") == 0
    out = capsys.readouterr().out
    assert "input [batch, 3,8,8]" in out and "max |Δ|" in out
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert _export(tmp_path, "van_nano", "--input-shape", "3,16,16",
                   "--arg", "drop_path=1e-3", "--arg", "kernel_size=7") == 0
