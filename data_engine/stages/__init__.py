"""Every stage op the job configs can name; importing this package registers them."""

from data_engine.stages import image_basic  # noqa: F401
