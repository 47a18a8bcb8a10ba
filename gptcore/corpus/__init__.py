"""Corpus-building steps as plain functions (no Prefect): dumps → links → fetch → extract → clean → dedup."""
