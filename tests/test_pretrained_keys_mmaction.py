"""MMAction2 checkpoints through model.init: converted weights give MMAction2's own logits.

The peer is MMAction2's own code (``mmaction.models``: ``C3D``, ``ResNet3dCSN``,
``ResNet2Plus1d`` and ``I3DHead`` inside a ``Recognizer3D``, built from the model configs of
its model zoo) with random weights; the state dict is saved as MMAction2 saves checkpoints
(``{"meta": ..., "state_dict": ...}``). MMAction2 is not a lightvid dependency: install it
next to this torch with ``pip install mmengine "mmcv-lite==2.0.1" einops`` and
``pip install --no-deps "mmaction2==1.1.0"`` (docs/training.md, "Fine-tuning"); without it
these tests are skipped.
"""
import warnings

import pytest
import torch

from lightvid.models.pretrained_keys import load_pretrained
from lightvid.models.registry import create_model
from tests.test_pretrained_keys import _randomise, logit_parity


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the same random clips every run: the parity figures are reproducible


def _mmaction_models():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mmaction.registry import MODELS
            from mmaction.utils import register_all_modules
    except (ImportError, AssertionError) as e:  # mmaction asserts its mmcv version range at import
        pytest.skip(f"MMAction2 is not importable here ({type(e).__name__}: {str(e).splitlines()[0]})")
    register_all_modules()
    return MODELS


def _head(num_classes, in_channels, spatial_type="avg"):
    return dict(type="I3DHead", num_classes=num_classes, in_channels=in_channels, spatial_type=spatial_type,
                dropout_ratio=0.5)


def _csn(mode, depth):  # configs/_base_/models/ircsn_r152.py (ipcsn: bottleneck_mode="ip")
    return dict(type="ResNet3dCSN", pretrained2d=False, pretrained=None, depth=depth, with_pool2=False,
                bottleneck_mode=mode, norm_eval=False, zero_init_residual=False)


R2PLUS1D_34 = dict(  # configs/_base_/models/r2plus1d_r34.py, SyncBN -> BN3d (the same in eval mode)
    type="ResNet2Plus1d", depth=34, pretrained=None, pretrained2d=False, norm_eval=False,
    conv_cfg=dict(type="Conv2plus1d"), norm_cfg=dict(type="BN3d", requires_grad=True, eps=1e-3),
    conv1_kernel=(3, 7, 7), conv1_stride_t=1, pool1_stride_t=1, inflate=(1, 1, 1, 1),
    spatial_strides=(1, 2, 2, 2), temporal_strides=(1, 2, 2, 2), zero_init_residual=False)
C3D = dict(type="C3D", style="pytorch", conv_cfg=dict(type="Conv3d"), norm_cfg=None, act_cfg=dict(type="ReLU"))

CASES = {  # lightvid model: (MMAction2 backbone, head, clip (T, S), layout)
    # C3D's fc6 takes pool5 flattened (8192 = 512x1x4x4): its input is 16x112x112
    "c3d": (C3D, _head(101, 4096, None), (16, 112), "mmaction_c3d"),
    "ir_csn_50": (_csn("ir", 50), _head(400, 2048), (8, 64), "mmaction_resnet3d"),
    "ip_csn_50": (_csn("ip", 50), _head(400, 2048), (8, 64), "mmaction_ip_csn"),
    "r2plus1d_34_mmaction": (R2PLUS1D_34, _head(400, 512), (8, 64), "mmaction_r2plus1d"),
    "ir_csn_152": (_csn("ir", 152), _head(400, 2048), (8, 64), "mmaction_resnet3d"),
}


@pytest.mark.parametrize("name", [
    "c3d", "ir_csn_50", "ip_csn_50", "r2plus1d_34_mmaction", "ir_csn_152"])
def test_mmaction2_logit_parity(name, tmp_path):
    models = _mmaction_models()
    backbone, head, (t, s), layout = CASES[name]
    peer = _randomise(models.build(dict(type="Recognizer3D", backbone=backbone, cls_head=head)))
    ours = create_model(name, num_classes=head["num_classes"])

    def save(state, path):  # the layout of MMAction2's released checkpoints
        torch.save({"meta": {"mmengine_version": "0.10.7"}, "state_dict": state}, path)

    info, _ = logit_parity(peer, peer.state_dict(), ours, torch.randn(1, 3, t, s, s), tmp_path / "mmaction.pth", save,
                           forward=lambda x: peer.cls_head(peer.backbone(x)))
    assert info["layout"] == layout and not info["head_replaced"]


def test_mmaction2_head_is_replaced_for_another_class_count(tmp_path):
    models = _mmaction_models()
    backbone, head, (t, s), _ = CASES["ir_csn_50"]
    peer = _randomise(models.build(dict(type="Recognizer3D", backbone=backbone, cls_head=head)))
    torch.save({"state_dict": peer.state_dict()}, tmp_path / "k400.pth")
    lines = []
    ours = create_model("ir_csn_50", num_classes=5)
    info = load_pretrained(ours, tmp_path / "k400.pth", log=lines.append)
    assert info["head_replaced"] and "400 classes in the file, 5 here" in lines[0]
    with torch.no_grad():
        x = torch.randn(1, 3, t, s, s)
        ours.eval()
        torch.testing.assert_close(ours.forward_features(x), peer.backbone(x), rtol=1e-4, atol=1e-3)
