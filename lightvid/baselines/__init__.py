"""Classic baselines of the scene-recognition report: tiny images and bag of visual words."""
