"""Training and evaluation on Lightning."""
