"""Editing data: open-domain pairs from video (shots -> frames -> pairs -> VLM instructions)."""
