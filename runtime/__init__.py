"""edgetag's runtime: front end, model loading and streaming inference.

Needs numpy, the C++ extension and (for models) onnxruntime; never torch.
"""
