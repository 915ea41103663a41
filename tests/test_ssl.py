import math

import pytest
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


def test_invert_and_channel_shuffle_views_keep_only_the_shape():
    """A colour-keyed image (a different constant per channel) comes out inverted and with
    its channels permuted; the multiset of channel values is all that survives."""
    torch.manual_seed(0)
    image = torch.tensor([0.1, 0.5, 0.8]).view(1, 3, 1, 1).expand(16, 3, 8, 8).contiguous()
    cfg = AugmentConfig(crop_scale_min=1.0, hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                        blur_p=0.0, invert_p=1.0)
    inverted = image_view_augmentation(cfg, 8, 3)(image)
    assert torch.allclose(inverted, 1.0 - image, atol=1e-6)
    cfg = AugmentConfig(crop_scale_min=1.0, hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                        blur_p=0.0, channel_shuffle_p=1.0)
    shuffled = image_view_augmentation(cfg, 8, 3)(image)
    values = shuffled[:, :, 0, 0]
    assert torch.allclose(values.sort(dim=1).values, image[:, :, 0, 0], atol=1e-6)
    assert not torch.allclose(values, image[:, :, 0, 0])  # 16 draws: some order changed


def test_view_probabilities_outside_0_1_are_refused():
    from avfed.config import load_config

    with pytest.raises(ValueError, match="augment.invert_p"):
        load_config("simclr_digits", ["augment.invert_p=1.5"])
