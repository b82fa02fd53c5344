"""The PyTorch models: backbones, their weights, the networks and the batches they read."""
