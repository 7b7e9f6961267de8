"""Training objectives: losses over a model and a batch, independent of the data format."""
