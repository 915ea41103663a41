import torch

from avfed import models, ssl
from avfed.runs import load_checkpoint, save_checkpoint


def test_checkpoint_round_trips_exactly(tmp_path):
    torch.manual_seed(0)
    method = ssl.create("simclr", models.create("resnet10_cifar", in_chans=1, width=4))
    method.train()
    method.backbone(torch.rand(4, 1, 16, 16))  # make BN running stats non-trivial
    path = save_checkpoint(method.state_dict(), tmp_path / "ck" / "model.safetensors")
    restored = load_checkpoint(path)
    original = method.state_dict()
    assert restored.keys() == original.keys()
    for key, value in original.items():
        assert restored[key].dtype == value.dtype
        assert torch.equal(restored[key], value), key
    fresh = ssl.create("simclr", models.create("resnet10_cifar", in_chans=1, width=4))
    fresh.load_state_dict(restored)
    x = torch.rand(2, 1, 16, 16)
    method.eval(), fresh.eval()
    assert torch.equal(method.embed(x), fresh.embed(x))


def test_missing_checkpoint_names_the_path(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_checkpoint(tmp_path / "nothing.safetensors")


def test_loading_global_weights_of_another_architecture_is_refused():
    import pytest

    small = ssl.create("simclr", models.create("resnet10_cifar", in_chans=1, width=4))
    other = ssl.create("simclr", models.create("resnet18_cifar", in_chans=1, width=4))
    with pytest.raises(ValueError, match="same recipe"):
        small.load_shared_state(other.shared_state())
    small.load_shared_state({k: v.clone() for k, v in small.shared_state().items()})
