"""Declarative job definitions (jobs/*.yaml) and the CLI that runs them locally or on a Ray cluster."""
