"""Logging set-up: avfed's own logger, and a switch to quiet Flower's round chatter."""

from __future__ import annotations

import logging

# Flower notices that are expected in avfed's set-up and would only alarm a user:
# central evaluation replaces federated evaluation on purpose, the Python launcher is
# the documented way to run the simulation engine from a library, and actors are
# always terminated when a simulation ends.
_EXPECTED_NOTICES = (
    "fraction_evaluate is set to 0.0",
    "The `run_simulation` function is deprecated",
    "Manually terminating ClientAppActor",
)


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(notice in message for notice in _EXPECTED_NOTICES)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("avfed") else f"avfed.{name}")


def drop_expected_flower_notices() -> None:
    logger = logging.getLogger("flwr")
    if not any(isinstance(f, _DropExpected) for f in logger.filters):
        logger.addFilter(_DropExpected())


def quiet_flower(verbose: bool) -> None:
    """Flower logs every sampling and aggregation step at INFO; our progress replaces it."""
    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        drop_expected_flower_notices()
