"""Data engine: the runtime every job shares and the image/text operators."""
