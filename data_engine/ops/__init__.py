"""Image and text operators: pure functions over bytes and pixels, wrapped as stages elsewhere."""
