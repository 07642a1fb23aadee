"""Benchmarks that measure edgetag side by side with the tools people use today."""
