"""Fast inference: Winograd convolution, optimised CPU path, export, bench, predict."""
