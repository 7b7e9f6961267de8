"""Spatial QA: sub-task generators, templates, independent checks, row rendering."""
