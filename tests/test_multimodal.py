"""Multi-modal backbone routing, unpaired client assignment and multi-modality training."""

import numpy as np
import pytest
import torch

from avfed import models, ssl
from avfed.build import build_run, client_modalities
from avfed.config import TrainConfig, load_config
from avfed.models.multimodal import use_modality
from avfed.ssl.cross_modal import cross_modal_regularizer, label_pairs
from avfed.training import train_ssl

BACKBONES = {
    "mm_resnet10_cifar": {"width": 4},
    "mm_vit_nano": {"patch_size": 4, "grid_size": 4},
}


def _backbone(name="mm_resnet10_cifar"):
    torch.manual_seed(0)
    return models.create(name, modalities={"image": 1, "audio": 1}, **BACKBONES[name])


def _grad_norm(module):
    grads = [p.grad.abs().sum() for p in module.parameters() if p.grad is not None]
    return float(sum(grads)) if grads else 0.0


@pytest.mark.parametrize("name", BACKBONES)
def test_mixed_batches_route_each_modality_to_its_own_stem(name):
    net = _backbone(name).eval()
    image, audio = torch.randn(3, 1, 16, 16), torch.randn(2, 1, 16, 24)
    mixed = net({"image": image, "audio": audio})
    assert mixed.shape == (5, net.num_features)
    with use_modality(net, "image"):
        assert torch.allclose(mixed[:3], net(image), atol=1e-6)
    with use_modality(net, "audio"):
        assert torch.allclose(mixed[3:], net(audio), atol=1e-6)
    # the two stems really differ: routing audio through the image stem changes the output
    with use_modality(net, "image"):
        assert not torch.allclose(mixed[3:], net(audio), atol=1e-4)


@pytest.mark.parametrize("name", BACKBONES)
def test_audio_gradients_reach_only_the_audio_stem(name):
    net = _backbone(name)
    with use_modality(net, "audio"):
        out = net(torch.randn(4, 1, 16, 16))
        # a random readout: a plain sum of a LayerNorm-ed output has zero input gradient
        (out * torch.randn_like(out)).sum().backward()
    assert _grad_norm(net.stems["image"]) == 0.0
    assert _grad_norm(net.stems["audio"]) > 0
    assert _grad_norm(net.trunk) > 0


def test_vit_stems_keep_their_own_position_tables_for_any_grid():
    net = _backbone("mm_vit_nano").eval()
    tables = {m: stem.pos_embed.shape for m, stem in net.stems.items()}
    assert tables == {"image": (1, 16, 32), "audio": (1, 16, 32)}
    assert not any(name.startswith("trunk.pos_embed") for name, _ in net.named_parameters())
    with use_modality(net, "audio"):  # 40 mels × 51 frames: a 10×13 grid from a 4×4 table
        assert net(torch.randn(2, 1, 40, 51)).shape == (2, 32)


def test_unknown_modality_is_rejected_with_the_valid_ones():
    with pytest.raises(KeyError, match="image, audio"), use_modality(_backbone(), "video"):
        pass


def test_client_modalities_follow_the_fractions():
    cfg = load_config("simclr_digits", ["data.audio_source=spoken_digits",
                                        "model.name=mm_resnet10_cifar",
                                        "data.client_modalities.image=0.4",
                                        "data.client_modalities.audio=0.4",
                                        "data.client_modalities.both=0.2"])
    kinds = client_modalities(cfg, 10)
    assert kinds.count(("image",)) == 4 and kinds.count(("audio",)) == 4
    assert kinds.count(("image", "audio")) == 2
    assert len(client_modalities(cfg, 3)) == 3  # rounding never loses a client


def test_config_rejects_an_audio_source_in_the_image_slot():
    from avfed.config import ConfigError

    with pytest.raises(ConfigError, match="data.source must be an image source"):
        build_run(load_config("simclr_digits", ["data.source=spoken_digits",
                                                "data.audio_source=spoken_digits"]))


def test_training_on_two_modalities_lowers_the_loss_and_touches_both_stems():
    net = _backbone()
    method = ssl.create("simclr", net, projection_dim=8, hidden_dim=16)
    g = torch.Generator().manual_seed(0)
    inputs = {"image": torch.rand(16, 1, 12, 12, generator=g),
              "audio": torch.rand(16, 1, 12, 16, generator=g)}
    before = {m: net.stems[m][0].weight.detach().clone() for m in inputs}

    def jitter(x):
        return x + 0.05 * torch.randn_like(x)

    augment = {m: jitter for m in inputs}
    cfg = TrainConfig(local_epochs=8, batch_size=8, lr=3e-3)
    result = train_ssl(method, inputs, augment, cfg, generator=g)  # type: ignore[arg-type]
    assert result.loss < result.first_loss
    assert result.num_examples == 32 and result.steps == 8 * 4
    for m in inputs:
        assert not torch.equal(before[m], net.stems[m][0].weight)


def test_cross_modal_pairs_share_a_class_and_the_term_has_gradients():
    image_labels, audio_labels = np.array([0, 1, 2, 1]), np.array([1, 1, 0])
    img_idx, aud_idx = label_pairs(image_labels, audio_labels, np.random.default_rng(0))
    assert list(img_idx) == [0, 1, 3]  # class 2 has no spoken counterpart
    assert (image_labels[img_idx] == audio_labels[aud_idx]).all()
    method = ssl.create("simclr", _backbone(), projection_dim=8, hidden_dim=16)
    term = cross_modal_regularizer(method, torch.rand(4, 1, 8, 8), torch.rand(3, 1, 8, 8),
                                   (img_idx, aud_idx), weight=0.5, batch_size=8)
    assert term is not None
    value = term()
    value.backward()
    assert value.item() > 0
    assert method.backbone.stems["image"][0].weight.grad is not None
    assert method.backbone.stems["audio"][0].weight.grad is not None
    assert cross_modal_regularizer(method, torch.rand(4, 1, 8, 8), torch.rand(3, 1, 8, 8),
                                   (img_idx, aud_idx), weight=0.0, batch_size=8) is None
