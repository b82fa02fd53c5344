"""Observations, rasters, env values, the long tail, and the training dataset."""
