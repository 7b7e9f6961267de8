"""Captioning: versioned prompts, output parsing and validation, and the generation backends
(`transformers`, `openai`, `vllm`) that every text-producing stage shares."""
