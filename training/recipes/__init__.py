"""Recipes: scripts that take a fresh machine to a trained, exported model (one folder each)."""
