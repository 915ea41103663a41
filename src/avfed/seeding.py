"""One place that turns a run seed into every RNG's state.

Clients derive their own streams from (run seed, round, client id) so that the order in
which Ray schedules them cannot change the numbers a run produces.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derive_seed(*parts: int) -> int:
    """A stable 63-bit seed from integer parts (unlike ``hash``, equal across processes)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> 1)
