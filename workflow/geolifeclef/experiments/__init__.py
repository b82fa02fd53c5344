"""Experiments: training and prediction jobs, the training loop, launch, serving."""
