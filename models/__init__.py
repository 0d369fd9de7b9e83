"""Weights dubalign ships (see MODELS.md); loaded with importlib.resources, never downloaded."""
