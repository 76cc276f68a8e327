"""Inflated Inception-v1. Filled by the light-weight 3D work."""
