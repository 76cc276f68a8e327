"""model.init: converted peer weights give the peer's logits; the head is replaced on a class-count change.

PyTorchVideo's model builders import ``torchvision.ops.RoIAlign`` (for its detection head) at
import time; torchvision cannot be imported next to this torch, so these tests put a stand-in
``torchvision.ops`` module in ``sys.modules`` while PyTorchVideo imports (none of the builders
used here touch it) and take it out again.
"""
import sys
import types

import pytest
import torch
import torch.nn as nn

from lightvid.checkpoint import CheckpointError
from lightvid.models.pretrained_keys import convert_state_dict, load_pretrained, read_state_dict
from lightvid.models.registry import create_model


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the same random clips every run: the parity figures are reproducible


def _pytorchvideo():
    """``pytorchvideo.models`` (its builders all import with it), imported with a stand-in
    ``torchvision.ops`` that is taken out of ``sys.modules`` again afterwards (Lightning and
    others look torchvision up by its module spec)."""
    added = "torchvision" not in sys.modules
    if added:
        tv, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.RoIAlign = type("RoIAlign", (nn.Module,), {})
        tv.ops = ops
        sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops
    try:
        return pytest.importorskip("pytorchvideo.models")
    finally:
        if added:
            del sys.modules["torchvision"], sys.modules["torchvision.ops"]


def _randomise(model: nn.Module) -> nn.Module:
    """Random weights and batch-norm statistics (so every renamed tensor matters), eval mode.

    Weights are drawn at He scale (std sqrt(2 / fan_in)) so that deep networks, with or
    without batch norm, keep logits of order one and a wrong tensor shows in every logit.
    """
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif t.ndim > 1:
                    t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return model.eval()


def logit_parity(peer: nn.Module, peer_state: dict, ours: nn.Module, x: torch.Tensor, path, save,
                 forward=None, rel: float = 1e-9) -> tuple[dict, float]:
    """Save ``peer_state`` with ``save(state, path)``, load it through ``model.init``'s loader into
    ``ours`` and compare logits with ``forward(x)`` (default ``peer(x)``); returns the load info and
    the max |diff|. Both run in float64 (the weights are the same float32 values), so a summation
    order of its own in either network does not show and a wrong tensor shows plainly; the diff
    must stay under ``rel`` times the largest |logit|."""
    save(peer_state, path)
    info = load_pretrained(ours, path, log=lambda s: None)
    peer.double().eval()
    ours.double().eval()
    x = x.double()
    with torch.no_grad():
        want, got = (forward or peer)(x), ours(x)
    assert got.shape == want.shape
    diff = (got - want).abs().max().item()
    assert want.abs().max() > 1e-2 and want.std() > 1e-3  # logits that tell a wrong weight apart
    assert diff <= rel * want.abs().max().item(), diff
    print(f"{type(ours).__name__} {tuple(x.shape)}: max |logit diff| {diff:.3g} (max |logit| "
          f"{want.abs().max().item():.3g}, float64)")
    return info, diff


def _parity(peer: nn.Module, ours: nn.Module, x: torch.Tensor, tmp_path, suffix=".pt", rel: float = 1e-9) -> dict:
    _randomise(peer)
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        def save(state, path):
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        def save(state, path):
            torch.save({"model_state": state}, path)  # PySlowFast's checkpoint layout
    info, _ = logit_parity(peer, peer.state_dict(), ours, x, tmp_path / f"peer{suffix}", save, rel=rel)
    return info


@pytest.mark.parametrize("name, frames, size", [("x3d_xs", 4, 64), ("x3d_s", 5, 64), ("x3d_m", 6, 64)])
def test_pytorchvideo_x3d_logit_parity(name, frames, size, tmp_path):
    pv = _pytorchvideo()
    from pytorchvideo.models.x3d import create_x3d

    # the hub's X3D-XS/S/M are one network; only the input differs. No softmax at the end (logits).
    peer = create_x3d(input_clip_length=frames, input_crop_size=size, depth_factor=2.2, model_num_class=400,
                      head_activation=None)
    assert pv is not None
    # rel 1e-6, not 1e-9: lightvid's identity batch norm on PyTorchVideo's bare shortcut projections
    # stores running_var = 1 - eps in float32, a scale off 1 by up to ~1e-7 per shortcut
    info = _parity(peer, create_model(name, num_classes=400), torch.randn(2, 3, frames, size, size), tmp_path,
                   rel=1e-6)
    assert info["layout"] == "pytorchvideo_x3d" and not info["head_replaced"]


@pytest.mark.slow
def test_pytorchvideo_csn101_logit_parity(tmp_path):
    _pytorchvideo()
    from pytorchvideo.models.csn import create_csn

    # PyTorchVideo's hub csn_r101: a max pool after the stem, batch-norm eps 1e-5
    t, s = 8, 64
    peer = create_csn(model_depth=101, model_num_class=400, stem_pool=nn.MaxPool3d,
                      head_pool_kernel_size=(t // 8, s // 32, s // 32))
    ours = create_model("ir_csn_101", num_classes=400, bn_eps=1e-5)
    info = _parity(peer, ours, torch.randn(1, 3, t, s, s), tmp_path, suffix=".safetensors")
    assert info["layout"] == "pytorchvideo_resnet"


def test_pytorchvideo_slow_r50_logit_parity(tmp_path):
    _pytorchvideo()
    from pytorchvideo.models.resnet import create_resnet

    # PyTorchVideo's hub slow_r50: create_resnet with a 1x7x7 stem (its defaults give the rest:
    # max pool, conv_a temporal kernels 1, 1, 3, 3, no temporal stride); head pool = the feature map
    t, s = 8, 64
    peer = create_resnet(model_depth=50, model_num_class=400, stem_conv_kernel_size=(1, 7, 7),
                         head_pool_kernel_size=(t, s // 32, s // 32))
    info = _parity(peer, create_model("slow_r50", num_classes=400), torch.randn(1, 3, t, s, s), tmp_path)
    assert info["layout"] == "pytorchvideo_resnet"


def test_pytorchvideo_r2plus1d_50_logit_parity(tmp_path):
    _pytorchvideo()
    from pytorchvideo.models.r2plus1d import create_r2plus1d

    # the hub's r2plus1d_r50 is create_r2plus1d(dropout_rate=0.5) with a softmax after the head in
    # eval mode; the logits are compared (no activation). Time /4 and space /32 at the head.
    t, s = 8, 64
    peer = create_r2plus1d(model_depth=50, model_num_class=400, dropout_rate=0.5, head_activation=None,
                           head_pool_kernel_size=(t // 4, s // 32, s // 32))
    ours = create_model("r2plus1d_50_pytorchvideo", num_classes=400)
    info = _parity(peer, ours, torch.randn(1, 3, t, s, s), tmp_path)
    assert info["layout"] == "pytorchvideo_resnet"


def test_the_sources_input_normalisation_is_in_default_cfg():
    # the data pipeline normalises with default_cfg's mean and std: the weights' own values
    assert create_model("slow_r50").default_cfg["std"] == (0.225,) * 3
    assert create_model("r2plus1d_34_mmaction", num_classes=4).default_cfg["mean"] == (0.485, 0.456, 0.406)
    c3d = create_model("c3d", num_classes=4, width_mult=0.125, mean=[104 / 255, 117 / 255, 128 / 255],
                       std=[1 / 255] * 3)
    assert c3d.default_cfg["mean"][0] == 104 / 255 and c3d.default_cfg["std"] == (1 / 255,) * 3


def test_head_is_replaced_when_the_class_count_differs(tmp_path):
    src = _randomise(create_model("r3d_10", num_classes=7, width_mult=0.125))
    torch.save(src.state_dict(), tmp_path / "w.pth")
    lines = []
    ours = create_model("r3d_10", num_classes=3, width_mult=0.125)
    info = load_pretrained(ours, tmp_path / "w.pth", log=lines.append)
    assert info["head_replaced"] and len(lines) == 1 and "classifier replaced" in lines[0] and "7" in lines[0]
    assert ours.fc.weight.shape == (3, ours.num_features)
    assert torch.equal(ours.stem[0].weight, src.stem[0].weight)  # the backbone is the file's


def test_lightning_checkpoint_and_dataparallel_prefixes_are_read(tmp_path):
    src = _randomise(create_model("r3d_10", num_classes=4, width_mult=0.125))
    torch.save({"state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "a.ckpt")
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "b.pth")
    for f in ("a.ckpt", "b.pth"):
        assert set(read_state_dict(tmp_path / f)) == set(src.state_dict())
        ours = create_model("r3d_10", num_classes=4, width_mult=0.125)
        assert load_pretrained(ours, tmp_path / f, log=lambda s: None)["layout"] == "lightvid"
        assert torch.equal(ours.fc.weight, src.fc.weight)


def test_weights_of_another_architecture_are_one_line_naming_the_file(tmp_path):
    torch.save(create_model("r3d_10", num_classes=4, width_mult=0.125).state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as e:
        load_pretrained(create_model("r3d_10", num_classes=4, width_mult=0.25), tmp_path / "w.pth")
    assert str(tmp_path / "w.pth") in str(e.value) and "\n" not in str(e.value)


def test_a_pytorchvideo_file_fine_tunes_through_model_init(tiny_synth, tmp_path, capsys):
    """model.init with a PyTorchVideo Slow-R50 file (built at 1/8 width by PyTorchVideo itself),
    a new 4-class head and one frozen epoch: the backbone leaves training as the file had it."""
    _pytorchvideo()
    from pytorchvideo.models.resnet import create_resnet

    from lightvid.train.config import load_config
    from lightvid.train.run import train
    from tests.test_train_run import REPO, tiny_overrides

    peer = _randomise(create_resnet(model_depth=50, model_num_class=400, stem_dim_out=8,
                                    stem_conv_kernel_size=(1, 7, 7), head_pool_kernel_size=(8, 1, 1)))
    torch.save({"model_state": peer.state_dict()}, tmp_path / "SLOW_8x8_R50.pyth")
    over = tiny_overrides(tiny_synth, epochs=1) + [
        "model.name=slow_r50", "model.kwargs={width_mult: 0.125}", f"model.init={tmp_path / 'SLOW_8x8_R50.pyth'}",
        "model.freeze_backbone_epochs=1", "trainer.final_eval=false"]
    train(load_config(REPO / "configs" / "quickstart.yaml", over), tmp_path / "run")
    assert "classifier replaced (400 classes in the file, 4 here)" in capsys.readouterr().out
    got = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    ours = create_model("slow_r50", num_classes=400, width_mult=0.125)
    want = convert_state_dict(peer.state_dict(), ours)[0]
    backbone = [k for k in want if not k.startswith("fc.")]
    assert len(backbone) > 300 and all(torch.equal(got[f"model.{k}"], want[k]) for k in backbone)
    assert got["model.fc.weight"].shape == (4, 256)
