"""Training-step precision and memory format (avfed.precision): detection, equivalence."""

from __future__ import annotations

import copy

import pytest
import torch

from avfed import models
from avfed.config import ConfigError, TrainConfig, load_config
from avfed.precision import Acceleration, resolve_memory_format, resolve_precision
from avfed.runs import load_checkpoint, save_checkpoint
from avfed.ssl import create
from avfed.training import train_ssl

# bf16 keeps 8 bits of mantissa (relative step 2^-8 ≈ 0.4 %): a loss computed through a
# small ResNet in bf16 autocast stays within 2 % of the fp32 loss from the same weights
BF16_LOSS_RTOL = 0.02


def _probe_cpu(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [
    (False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")])
def test_auto_follows_the_cpus_native_bf16(monkeypatch, avx512_bf16, amx, expected):
    _probe_cpu(monkeypatch, avx512_bf16, amx)
    precision, reason = resolve_precision("auto", "cpu")
    assert precision == expected
    assert reason.startswith("auto:")
    # an explicit choice is never second-guessed
    assert resolve_precision("bf16", "cpu")[0] == "bf16"
    assert resolve_precision("fp32", "cpu")[0] == "fp32"


def test_auto_reads_proc_cpuinfo_when_torch_has_no_probe(monkeypatch):
    import avfed.precision as precision

    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx2"})
    assert resolve_precision("auto", "cpu")[0] == "fp32"  # AVX-512 alone only emulates bf16
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert resolve_precision("auto", "cpu") == ("bf16", "auto: avx512_bf16")


def test_auto_on_cuda_asks_torch_for_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_precision("auto", "cuda:0")[0] == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", "cuda")[0] == "bf16"


def test_bad_choices_fail_naming_the_field():
    with pytest.raises(ConfigError, match="train.precision"):
        load_config("simclr_digits", ["train.precision=fp8"])
    with pytest.raises(ConfigError, match="train.precision': fp16 needs device=cuda"):
        load_config("simclr_digits", ["train.precision=fp16"])
    with pytest.raises(ConfigError, match="train.memory_format"):
        load_config("simclr_digits", ["train.memory_format=nhwc"])
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", "cpu")


class TinyConvNet(torch.nn.Sequential):
    """Two conv-BN-ReLU blocks: the layers a step's precision and layout act on, small
    enough for a test."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                         torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, padding=1, stride=2),
                         torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                         torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())


def _simclr(backbone: torch.nn.Module | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    return create("simclr", backbone or TinyConvNet(), projection_dim=32, hidden_dim=64,
                  temperature=0.5)


def test_bf16_step_matches_fp32_step_from_the_same_weights():
    method = _simclr()
    images = torch.rand(16, 1, 16, 16)
    losses = {}
    for precision in ("fp32", "bf16"):
        model = copy.deepcopy(method)
        cfg = TrainConfig(batch_size=16, precision=precision, memory_format="contiguous")
        result = train_ssl(model, images, torch.nn.Identity(), cfg,
                           generator=torch.Generator().manual_seed(0))
        assert result.steps == 1
        losses[precision] = result.loss
        # the weights stay fp32 whatever the step computed in
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=BF16_LOSS_RTOL)
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in bf16


def test_autocast_runs_convolutions_in_bf16_and_leaves_evaluation_in_fp32():
    acceleration = Acceleration("bf16", "contiguous", "cpu")
    conv = torch.nn.Conv2d(1, 4, 3)
    x = torch.rand(2, 1, 8, 8)
    with acceleration.autocast():
        assert conv(x).dtype == torch.bfloat16
    assert conv(x).dtype == torch.float32


def _spatial_kernel(p: torch.Tensor) -> bool:
    """A conv kernel whose channels_last layout differs from NCHW (not 1×1, not 1 input
    channel)."""
    return p.ndim == 4 and p.shape[1] > 1 and p.shape[-1] > 1


def test_channels_last_outputs_equal_contiguous_outputs():
    torch.manual_seed(0)
    reference = models.create("resnet18_cifar", in_chans=1, width=4)
    fast = copy.deepcopy(reference)
    acceleration = Acceleration.for_model(TrainConfig(precision="fp32",
                                                      memory_format="channels_last"),
                                          "cpu", fast)
    kernels = [p for p in fast.parameters() if _spatial_kernel(p)]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last)
                           and not p.is_contiguous() for p in kernels)
    x = torch.rand(8, 1, 16, 16)
    for train in (True, False):
        reference.train(train)
        fast.train(train)
        expected = reference(x)
        got = fast(acceleration.to_input(x))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_channels_last_survives_loading_and_checkpoints_contiguous(tmp_path):
    model = TinyConvNet()
    Acceleration.for_model(TrainConfig(memory_format="channels_last"), "cpu", model)
    convs = [p for p in model.parameters() if _spatial_kernel(p)]
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict(state)  # a federated round's global weights
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    path = save_checkpoint(model.state_dict(), tmp_path / "w.safetensors")
    loaded = load_checkpoint(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value)


def test_memory_format_auto_needs_a_2d_convolution():
    assert resolve_memory_format("auto", torch.nn.Conv2d(1, 2, 3)) == "channels_last"
    assert resolve_memory_format("auto", torch.nn.Linear(3, 2)) == "contiguous"
    assert resolve_memory_format("contiguous", torch.nn.Conv2d(1, 2, 3)) == "contiguous"
    video = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.Conv2d(2, 2, 1))
    assert resolve_memory_format("auto", video) == "contiguous"
    with pytest.raises(ValueError, match="3-D"):
        resolve_memory_format("channels_last", video)


def test_loss_scaled_step_equals_plain_step():
    """The fp16 path's scaler multiplies the loss and divides the gradients back: an SGD
    step through it lands where a plain step does (CPU scaler, fp32 arithmetic)."""
    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 2)
    scaled = copy.deepcopy(plain)
    x = torch.rand(5, 4)
    Acceleration("fp32").stepper(torch.optim.SGD(plain.parameters(), lr=0.1))(
        plain(x).pow(2).mean())
    stepper = Acceleration("fp32").stepper(torch.optim.SGD(scaled.parameters(), lr=0.1))
    stepper.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    stepper(scaled(x).pow(2).mean())
    for a, b in zip(plain.parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_a_task_without_its_own_resolution_is_described_as_fp32(monkeypatch):
    from types import SimpleNamespace

    from avfed.precision import task_acceleration

    _probe_cpu(monkeypatch, avx512_bf16=True, amx=False)  # the config would pick bf16 ...
    plain_task = SimpleNamespace(model=TinyConvNet())
    described = task_acceleration(plain_task, TrainConfig(), "cpu").describe()
    # ... but a task that never applies it trains in fp32, and the header says so
    assert described == "fp32 (SimpleNamespace does not apply train.precision) · contiguous"
    own = Acceleration("bf16", "contiguous", "cpu", reason="asked for")
    assert task_acceleration(SimpleNamespace(acceleration=own), TrainConfig(), "cpu") is own


@pytest.mark.parametrize("name", ["nt_xent", "info_nce_with_queue", "barlow_twins_loss"])
def test_ssl_losses_run_in_fp32_inside_bf16_autocast(name):
    """At τ = 0.2 a bf16 similarity matrix moves NT-Xent by ~1e-2; the losses leave
    autocast, so under it they equal their fp32 value on the same inputs."""
    from avfed.ssl import losses

    torch.manual_seed(0)
    z1, z2, queue = torch.randn(64, 32), torch.randn(64, 32), torch.randn(128, 32)
    args = {"nt_xent": (z1, z2, 0.2), "info_nce_with_queue": (z1, z2, queue, 0.2),
            "barlow_twins_loss": (z1, z2)}[name]
    loss = getattr(losses, name)
    reference = loss(*args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = loss(*args)
        unprotected = loss.__wrapped__(*args)
    assert under_autocast.dtype == torch.float32
    assert torch.allclose(under_autocast, reference, rtol=1e-6, atol=1e-6)
    if name != "barlow_twins_loss":  # its inner cross-correlation is protected on its own
        assert (unprotected.float() - reference).abs() > 1e-4
