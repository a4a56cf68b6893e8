"""Corpus readers, indexed datasets and task readers."""
