"""Capture side of Invisible Strings: skeleton layouts, the PoseFrame protocol, sources,
pose estimation, recordings and the capture process. Imports numpy, opencv, mediapipe and
zmq only — never torch."""

__version__ = "0.1.0"
