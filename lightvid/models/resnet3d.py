"""Generic video ResNet (R3D, MCx, rMCx, R(2+1)D, ip-CSN, ir-CSN). Filled by the ResNet3D work."""
