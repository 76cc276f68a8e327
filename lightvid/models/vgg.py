"""VGG. Filled by the image-track work."""
