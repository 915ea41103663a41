"""FSSUAVL's cross-modal pair term runs on the device the SSL method lives on."""

import numpy as np
import torch

from avfed import models, ssl
from avfed.ssl.cross_modal import cross_modal_regularizer, label_pairs


def test_cross_modal_term_moves_its_batch_to_the_method_device():
    # the client builds the term with CPU inputs and then moves the method to its device;
    # "meta" stands in for an accelerator: a CPU batch reaching meta weights raises
    torch.manual_seed(0)
    backbone = models.create("mm_resnet10_cifar", modalities={"image": 1, "audio": 1}, width=4)
    method = ssl.create("simclr", backbone, projection_dim=8, hidden_dim=16)
    pairs = label_pairs(np.array([0, 1, 2, 1]), np.array([1, 1, 0]), np.random.default_rng(0))
    images, audio = torch.rand(4, 1, 8, 8), torch.rand(3, 1, 8, 8)
    term = cross_modal_regularizer(method, images, audio, pairs, weight=0.5, batch_size=8)
    assert term is not None
    method.to("meta")
    value = term()
    assert value.device.type == "meta" and value.shape == ()
    assert images.device.type == "cpu"  # the stored inputs stay where they were
