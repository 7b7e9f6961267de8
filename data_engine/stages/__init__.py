"""The engine's image and text stages, one module per op; `data_engine/registry.py` says which module owns
which op."""
