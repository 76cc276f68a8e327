"""Inception-v1 (GoogLeNet). Filled by the light-weight 3D work."""
