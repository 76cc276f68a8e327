"""Video and image data: synthetic motion benchmark, decoding, sampling, transforms, dataset formats.

Public API: ``build.DataConfig``, ``build.build_dataset``, ``build.collate_skip_bad``,
``synth.ensure_synth``, ``video.read_clip``, ``video.probe``, ``video.VideoDecodeError``
(see docs/data.md).
"""
