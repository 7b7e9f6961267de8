"""openspatial: see ARCHITECTURE.md; built in its own issue."""
