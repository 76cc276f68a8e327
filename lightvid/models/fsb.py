"""Fully separable block models. Filled by the light-weight 3D work."""
