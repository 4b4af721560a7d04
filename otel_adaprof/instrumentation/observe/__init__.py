"""Observation: what a window cost and carried (CPU, bytes, counts)."""
