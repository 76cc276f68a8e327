"""Seed 004's CIFAR models. Filled by the image-track work."""
