"""Input formats beyond plain folders (tar/WebDataset shards, Parquet tables) and the WebDataset export.

Importing this package registers the reader kinds `tar` and `parquet_images`.
"""

from data_engine.io import parquet_reader, tar_reader  # noqa: F401
