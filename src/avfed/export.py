"""Export a registered backbone to ONNX, optionally in its re-parameterized deploy form.

Edge deployment is where structural re-parameterization pays off, so the deploy form
is what gets exported: ``reparameterize_model`` folds every multi-branch block first.
The export is checked by running it in onnxruntime and comparing with torch on the same
input; onnx and onnxruntime are optional (``pip install avfed[export]``).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avfed.models.reparam import reparameterize_model


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the '{module}' package: "
                          "pip install 'avfed[export]'") from None


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, *,
                deploy: bool = True, opset: int = 17) -> Path:
    """Write ``model`` (deploy form when ``deploy``) to ``path``; returns the path.

    The model is copied, so the caller's training-form model is left untouched. The
    batch dimension is exported as dynamic.
    """
    _require("onnx")
    net = copy.deepcopy(model).eval()
    if deploy:
        reparameterize_model(net)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the TorchScript exporter needs no extra package (the dynamo one needs onnxscript);
    # torch flags it as legacy, which is not actionable here
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (example,), str(path), input_names=["input"],
                          output_names=["features"], opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                          dynamo=False)
    return path


def onnx_max_abs_diff(model: nn.Module, path: str | Path, example: torch.Tensor, *,
                      deploy: bool = True) -> float:
    """max |onnxruntime(x) − torch(x)| for the exported file and the (deploy) model."""
    _require("onnxruntime")
    import onnxruntime as ort

    net = copy.deepcopy(model).eval()
    if deploy:
        reparameterize_model(net)
    with torch.no_grad():
        expected = net(example).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": example.numpy()})
    return float(np.abs(got - expected).max())
