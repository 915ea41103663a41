"""ONNX export of deploy forms, checked with onnxruntime."""

import copy

import pytest
import torch

from avfed import models
from avfed.models.reparam import randomize_bn_stats

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from avfed.export import export_onnx, onnx_max_abs_diff  # noqa: E402


@pytest.mark.parametrize(("name", "kwargs", "shape"), [
    ("audio_rep_inceptionnext_tiny", {"width": 8}, (1, 64, 48)),
    ("resnet10_cifar", {"width": 8}, (1, 32, 32)),
    ("repvgg_tiny", {}, (3, 32, 32)),
])
def test_onnxruntime_matches_torch(tmp_path, name, kwargs, shape):
    torch.manual_seed(0)
    model = models.create(name, in_chans=shape[0], **kwargs)
    randomize_bn_stats(model, torch.Generator().manual_seed(1))
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(3, *shape)
    path = export_onnx(model, x, tmp_path / f"{name}.onnx", deploy=True)
    assert path.stat().st_size > 0
    assert onnx_max_abs_diff(model, path, x, deploy=True) < 1e-4
    # the caller's model keeps its training form
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_cli_exports_and_checks(tmp_path, capsys):
    from avfed.cli import main

    out = tmp_path / "m.onnx"
    code = main(["export", "audio_rep_inceptionnext_tiny", str(out), "--deploy",
                 "--input-shape", "1,64,48", "--arg", "width=8"])
    assert code == 0 and out.is_file()
    assert "max |Δ|" in capsys.readouterr().out
    assert main(["export", "no_such_model", str(tmp_path / "x.onnx")]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().out
