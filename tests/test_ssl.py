import math

import torch

from avfed import models, ssl
from avfed.config import AugmentConfig, TrainConfig
from avfed.data.transforms import image_view_augmentation
from avfed.ssl.losses import nt_xent
from avfed.training import train_ssl


def test_nt_xent_collinear_embeddings_equal_log_2n_minus_1():
    n = 8
    z = torch.ones(n, 16)
    assert abs(nt_xent(z, z, temperature=0.3).item() - math.log(2 * n - 1)) < 1e-5


def test_nt_xent_prefers_matching_pairs():
    torch.manual_seed(0)
    z1 = torch.randn(16, 32)
    aligned = nt_xent(z1, z1 + 0.01 * torch.randn_like(z1), 0.5)
    shuffled = nt_xent(z1, z1[torch.randperm(16)], 0.5)
    assert aligned < shuffled


def test_nt_xent_rejects_mismatched_shapes():
    import pytest

    with pytest.raises(ValueError, match="two \\[N, D\\]"):
        nt_xent(torch.zeros(4, 8), torch.zeros(5, 8))


def test_simclr_loss_decreases_on_a_tiny_run():
    from avfed.data.sources.image_digits import load_image_digits

    torch.manual_seed(0)
    images = load_image_digits(image_size=16)[0].images[:128]
    method = ssl.create("simclr", models.create("resnet10_cifar", in_chans=1, width=8),
                        projection_dim=16, hidden_dim=32)
    augment = image_view_augmentation(AugmentConfig(hflip_p=0.0, grayscale_p=0.0), 16, 1)
    cfg = TrainConfig(local_epochs=8, batch_size=32, lr=3e-3)
    result = train_ssl(method, images, augment, cfg, generator=torch.Generator().manual_seed(0))
    assert result.steps == 32
    assert result.loss < result.first_loss - 0.1


def test_registry_lists_and_rejects_unknown_names():
    import pytest

    assert "resnet18_cifar" in models.list_models()
    assert "simclr" in ssl.list_methods()
    with pytest.raises(KeyError, match="valid names: .*resnet18_cifar"):
        models.create("resnet1000")


def test_cifar_resnet_output_shape():
    net = models.create("resnet18_cifar", in_chans=3, width=8)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, net.num_features) == (2, 64)
