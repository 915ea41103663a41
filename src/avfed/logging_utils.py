"""Logging set-up: avfed's own logger, and a switch to quiet Flower's round chatter."""

from __future__ import annotations

import logging


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name if name.startswith("avfed") else f"avfed.{name}")


def quiet_flower(verbose: bool) -> None:
    """Flower logs every sampling and aggregation step at INFO; our progress replaces it."""
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger("flwr").setLevel(level)
