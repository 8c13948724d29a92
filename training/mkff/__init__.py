"""MKFF-ST-GCN: the learned refiner of noisy duet keypoints (causal for live use, centred offline).

Modules: :mod:`training.mkff.features` (keypoint flow, velocity, acceleration),
:mod:`training.mkff.model` (the model and its config, registered as ``"mkff"``),
:mod:`training.mkff.task` (data, loss, training through :func:`training.loop.fit`, evaluation
against raw input, One Euro and the offline DCT low-pass).
"""
