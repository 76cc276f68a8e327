"""X3D. Filled by the light-weight 3D work."""
