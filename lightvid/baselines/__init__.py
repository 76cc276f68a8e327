"""Classic baselines of seed 004: tiny images and bag of visual words."""
