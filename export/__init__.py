"""edgetag's export side: students to self-describing ONNX files (needs torch and onnx)."""
