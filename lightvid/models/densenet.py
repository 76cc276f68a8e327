"""DenseNet. Filled by the image-track work."""
