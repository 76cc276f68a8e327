"""Highway network. Filled by the image-track work."""
