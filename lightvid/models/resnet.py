"""2D ResNets. Filled by the image-track work."""
