"""Compression: knowledge distillation and weight transfer."""
