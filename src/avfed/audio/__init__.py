"""Audio front-end and log-mel augmentations, on torch alone."""
