"""Measuring models: parameter/MAC summaries, speed benchmarks and report plots."""
