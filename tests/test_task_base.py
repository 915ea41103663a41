"""The plain training step tasks share: the regularizer is optimised, NaN never lands."""

import pytest
import torch

from avfed.tasks import TrainContext


def test_fp32_step_adds_the_regularizer_and_refuses_a_non_finite_loss():
    weight = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    pull = TrainContext(seed=0, server_round=1, regularizer=lambda: (weight - 3.0).pow(2).sum())
    pull.fp32_step(weight.sum() * 0.0, optimizer)  # only the regularizer has a gradient
    torch.testing.assert_close(weight.detach(), torch.tensor([3.0]))  # 1 - 0.5 * 2 * (1 - 3)

    with pytest.raises(FloatingPointError, match="toy loss became nan"):
        TrainContext(seed=0, server_round=1).fp32_step(weight.sum() * float("nan"), optimizer,
                                                       "toy loss")
    torch.testing.assert_close(weight.detach(), torch.tensor([3.0]))
