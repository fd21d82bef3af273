"""Offline metrics and label schemes: no hub downloads, no `evaluate.load`."""
