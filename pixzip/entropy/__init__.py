"""Entropy coding stages: the adaptive context-mixing stage of issue 20 (adaptive.py)."""
