"""Video and image data: synthetic motion benchmark, decoding, sampling, transforms, dataset formats."""
