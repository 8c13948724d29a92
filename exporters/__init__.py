"""Export of trained models to ONNX: one spec per model, validation against ONNX Runtime,
model metadata."""
