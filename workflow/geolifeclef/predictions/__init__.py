"""Predictions: the one table every model writes, the metrics, blends and fitted blends."""
