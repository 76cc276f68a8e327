"""Region operations in pure torch: ROI pooling / ROI align (2D and over time), box IoU and NMS.

Semantics and signatures follow torchvision.ops (which cannot be imported next to this torch);
forward and backward come from autograd over vectorised tensor code.
"""
from lightvid.ops.boxes import (  # noqa: F401
    batched_nms,
    box_area,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nms,
    remove_small_boxes,
)
from lightvid.ops.roi import roi_align, roi_align_3d, roi_pool  # noqa: F401
