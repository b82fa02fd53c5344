"""Patches: the archive's files, their geometry and decoding, the stores, caches and statistics."""
