"""Data: torch datasets and transforms for training, and the synthetic example generator."""
