"""Offline training: datasets and simulators, torch models, losses, the training loop,
evaluation metrics and plots. Importing this package does not import torch; its modules do."""
