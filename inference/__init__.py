"""Live inference: online cleaning, ONNX Runtime sessions, the OSC schema and sender, the
inference process and the bundled default models. Never imports torch."""
