"""Runnable examples: ``python -m ferroptim.examples.mlp``."""
