"""Prompt processing: per-visit calibration, image differencing, association and alerts."""
