"""Assemble samples, split them, validate them, and publish them as shards with a manifest."""
