"""The ResNet3D family: torchvision compatibility, published figures, layouts, weight loading."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lightvid
from lightvid.analysis.summary import summarize
from lightvid.checkpoint import CheckpointError, save_atomic
from lightvid.errors import UserError
from lightvid.models.resnet3d import MC, RMC, VideoResNet, midplanes_for

TV_KEYS = json.loads((Path(__file__).parent / "data" / "torchvision_video_keys.json").read_text())["models"]
CLIP16 = (3, 16, 112, 112)


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return lightvid.create_model(name, **kwargs)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_macs(name, size, **kwargs) -> int:
    """MACs by lightvid.analysis.summary, on the meta device (shapes only: no memory, no compute)."""
    with torch.device("meta"):
        return summarize(lightvid.create_model(name, **kwargs), size).macs


# ---- torchvision.models.video compatibility -------------------------------------------------

# torchvision's published figures (400 classes, 3x16x112x112): parameters, GMACs ("GFLOPS" in its docs)
TORCHVISION = {"r3d_18": (33_371_472, 40.697), "mc3_18": (11_695_440, 43.343), "r2plus1d_18": (31_505_325, 40.519)}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_published_figures(name):
    params, gmacs = TORCHVISION[name]
    assert n_params(meta_model(name, num_classes=400)) == params
    assert round(meta_macs(name, CLIP16, num_classes=400) / 1e9, 3) == gmacs


@pytest.mark.parametrize("name", sorted(TV_KEYS))
def test_torchvision_state_dict_keys_and_shapes(name):
    sd = meta_model(name, num_classes=400).state_dict()
    assert list(sd) == list(TV_KEYS[name])  # same names, same order
    assert {k: list(v.shape) for k, v in sd.items()} == TV_KEYS[name]


def _randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("name", sorted(TV_KEYS))
def test_torchvision_checkpoint_roundtrip_strict(name, tmp_path):
    torch.manual_seed(0)
    model = lightvid.create_model(name, num_classes=400).eval()
    _randomize_bn(model)
    path = save_atomic(model.state_dict(), tmp_path / f"{name}.pth")
    reloaded = lightvid.create_model(name, num_classes=400, weights=str(path)).eval()
    assert list(reloaded.state_dict()) == list(TV_KEYS[name])
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reloaded(x))


def _reference_forward(sd: dict, x: torch.Tensor, arch: str) -> torch.Tensor:
    """torchvision's VideoResNet forward, written functionally from the state_dict's key names.

    Independent of lightvid's modules: it checks that our op order (conv, BN, ReLU, the
    (2+1)D middle BN+ReLU, the shortcut, the strides) is torchvision's.
    """
    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                            False, 0.0, 1e-5)

    def conv_op(t, p, s, kind):
        if kind == "3d":
            return F.conv3d(t, sd[p + ".weight"], stride=s, padding=1)
        if kind == "2d":
            return F.conv3d(t, sd[p + ".weight"], stride=(1, s, s), padding=(0, 1, 1))
        t = F.relu(bn(F.conv3d(t, sd[p + ".0.weight"], stride=(1, s, s), padding=(0, 1, 1)), p + ".1"))
        return F.conv3d(t, sd[p + ".3.weight"], stride=(s, 1, 1), padding=(1, 0, 0))

    if arch == "r2plus1d_18":
        x = F.relu(bn(F.conv3d(x, sd["stem.0.weight"], stride=(1, 2, 2), padding=(0, 3, 3)), "stem.1"))
        x = F.relu(bn(F.conv3d(x, sd["stem.3.weight"], padding=(1, 0, 0)), "stem.4"))
        kinds = ["2plus1d"] * 4
    else:
        x = F.relu(bn(F.conv3d(x, sd["stem.0.weight"], stride=(1, 2, 2), padding=(1, 3, 3)), "stem.1"))
        kinds = ["3d"] * 4 if arch == "r3d_18" else ["3d", "2d", "2d", "2d"]
    for i, kind in enumerate(kinds):
        for j in range(2):
            p = f"layer{i + 1}.{j}"
            s = 2 if (i > 0 and j == 0) else 1
            out = F.relu(bn(conv_op(x, p + ".conv1.0", s, kind), p + ".conv1.1"))
            out = bn(conv_op(out, p + ".conv2.0", 1, kind), p + ".conv2.1")
            if p + ".downsample.0.weight" in sd:
                ds = (1, s, s) if kind == "2d" else (s, s, s)
                x = bn(F.conv3d(x, sd[p + ".downsample.0.weight"], stride=ds), p + ".downsample.1")
            x = F.relu(out + x)
    return F.linear(x.mean(dim=(2, 3, 4)), sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize("name", sorted(TV_KEYS))
def test_same_outputs_as_torchvision_forward(name):
    torch.manual_seed(0)  # op order does not depend on width: a quarter-width model keeps this fast
    model = lightvid.create_model(name, num_classes=400, width_mult=0.25).eval()
    _randomize_bn(model)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_forward(model.state_dict(), x, name), rtol=1e-5, atol=1e-5)


# ---- Tran et al. 2018, Table 2 (18 layers, 400 classes) --------------------------------------

# Parameter counts in millions as printed in Table 2 (one decimal). R(2+1)D is the paper's
# per-convolution middle width (midplanes="paper").
TABLE2_PARAMS_M = {
    "r2d_18": 11.4, "fr2d_18": 11.4, "r3d_18": 33.4,
    "mc2_18": 11.4, "mc3_18": 11.7, "mc4_18": 12.7, "mc5_18": 16.9,
    "rmc2_18": 33.3, "rmc3_18": 33.0, "rmc4_18": 32.0, "rmc5_18": 27.9,
    "r2plus1d_18": 33.3,
}
TABLE2_KWARGS = {"r2plus1d_18": {"midplanes": "paper"}, "r2d_18": {"num_frames": 8}}


@pytest.mark.parametrize("name", sorted(TABLE2_PARAMS_M))
def test_table2_params(name):
    """Within one unit of the table's last digit (0.1M): the table rounds (or truncates) to 0.1M.

    R2D's first layer takes all 3T input channels, so its count depends on the clip length:
    11.45M at 8 frames (checked here), 11.52M at 16 (see docs/resnet3d.md).
    """
    got = n_params(meta_model(name, num_classes=400, **TABLE2_KWARGS.get(name, {}))) / 1e6
    assert abs(got - TABLE2_PARAMS_M[name]) <= 0.1 + 1e-9, f"{name}: {got:.3f}M vs table {TABLE2_PARAMS_M[name]}M"


# lightvid's own MAC counts (summary.py's convention) at 3x16x112x112, 400 classes: regression
# values, not published figures (see docs/resnet3d.md). r3d/mc3/r2plus1d(torchvision) are also
# torchvision's published figures above.
OWN_GMACS_16 = {
    "r2d_18": 2.168, "fr2d_18": 27.601, "r3d_18": 40.697,
    "mc2_18": 28.545, "mc3_18": 43.343, "mc4_18": 39.952, "mc5_18": 39.900,
    "rmc2_18": 39.752, "rmc3_18": 24.955, "rmc4_18": 29.091, "rmc5_18": 30.787,
    "r2plus1d_18": 41.496,
}


def test_table2_macs_regression_and_relations():
    got = {n: meta_macs(n, CLIP16, num_classes=400, **({"midplanes": "paper"} if n == "r2plus1d_18" else {}))
           for n in OWN_GMACS_16}
    assert {n: round(v / 1e9, 3) for n, v in got.items()} == OWN_GMACS_16
    # f-R2D is a 2D ResNet-18 on each of the 16 frames: 16 x the 2D network's conv MACs + fc
    fc = 512 * 400
    assert (got["fr2d_18"] - fc) % 16 == 0
    # R2D folds the clip at the first layer: after it, exactly one frame of f-R2D's work
    stem_r2d, stem_2d = 64 * 56 * 56 * 3 * 16 * 49, 64 * 56 * 56 * 3 * 49
    assert got["r2d_18"] - stem_r2d == (got["fr2d_18"] - fc) // 16 - stem_2d + fc
    # MC2 differs from f-R2D only by the 3x7x7 stem; rMC2 from R3D only by the 1x7x7 stem
    assert got["mc2_18"] - got["fr2d_18"] == 2 * stem_2d * 16
    assert got["r3d_18"] - got["rmc2_18"] == 2 * stem_2d * 16


# ---- CSN: VMZ model zoo (400 classes) ----------------------------------------------------------

@pytest.mark.parametrize("name,params_m,gflops", [("ir_csn_152", 29.6, 96.7), ("ip_csn_152", 32.8, 108.8)])
def test_csn152_vmz_figures_within_1pct(name, params_m, gflops):
    params = n_params(meta_model(name, num_classes=400))
    assert abs(params / 1e6 - params_m) / params_m < 0.01
    macs = meta_macs(name, (3, 32, 256, 256), num_classes=400)  # the zoo's "GFLOPs" are MACs at 32x256x256
    assert abs(macs / 1e9 - gflops) / gflops < 0.01
    at224 = meta_macs(name, (3, 32, 224, 224), num_classes=400)  # not at the 224 of the zoo's table header
    assert abs(at224 / 1e9 - gflops) / gflops > 0.2


def _feature_shapes(model, x):
    shapes = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
             for n in ("stem", "layer1", "layer2", "layer3", "layer4")]
    model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_csn_layout_follows_seed_003():
    with torch.device("meta"):
        m = lightvid.create_model("ir_csn_152", num_classes=400)
        shapes = _feature_shapes(m, torch.zeros(1, 3, 32, 224, 224))
    assert m.stem[0].kernel_size == (3, 7, 7) and m.stem[0].stride == (1, 2, 2)
    pool = m.stem[3]
    assert isinstance(pool, torch.nn.MaxPool3d) and pool.kernel_size == (1, 3, 3) and pool.stride == (1, 2, 2)
    assert shapes == {"stem": (64, 32, 56, 56), "layer1": (256, 32, 56, 56), "layer2": (512, 16, 28, 28),
                      "layer3": (1024, 8, 14, 14), "layer4": (2048, 4, 7, 7)}
    assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == [3, 8, 36, 3]


def test_csn_convolutions():
    ir = meta_model("ir_csn_50").layer2[1].conv2[0]
    assert isinstance(ir, torch.nn.Conv3d) and ir.groups == ir.in_channels == 128 and ir.kernel_size == (3, 3, 3)
    ip = meta_model("ip_csn_50").layer2[1].conv2[0]
    assert ip[0].kernel_size == (1, 1, 1) and ip[0].groups == 1
    assert isinstance(ip[1], torch.nn.BatchNorm3d)
    assert ip[2].groups == ip[2].in_channels == 128 and ip[2].kernel_size == (3, 3, 3)
    # the ip-CSN/ir-CSN difference is exactly one 1x1x1 convolution + BN per block
    counts = {"26": (2, 2, 2, 2), "50": (3, 4, 6, 3), "101": (3, 4, 23, 3), "152": (3, 8, 36, 3)}
    for depth, blocks in counts.items():
        extra = sum(n * (w * w + 2 * w) for n, w in zip(blocks, (64, 128, 256, 512)))
        assert n_params(meta_model(f"ip_csn_{depth}")) - n_params(meta_model(f"ir_csn_{depth}")) == extra


# ---- layouts of the 18-layer variants --------------------------------------------------------

@pytest.mark.parametrize("name,t_out", [
    ("r3d_18", 2), ("r2d_18", 1), ("fr2d_18", 16), ("mc2_18", 16), ("mc3_18", 16), ("mc4_18", 8), ("mc5_18", 4),
    ("rmc2_18", 2), ("rmc3_18", 2), ("rmc4_18", 4), ("rmc5_18", 8), ("r2plus1d_18", 2),
])
def test_temporal_extent_of_the_last_stage(name, t_out):
    with torch.device("meta"):
        feats = lightvid.create_model(name).forward_features(torch.zeros(1, *CLIP16))
    assert tuple(feats.shape[1:]) == (512, t_out, 7, 7)


def test_mixed_convolution_tables():
    def temporal_kernels(name):
        m = meta_model(name)
        return [m.stem[0].kernel_size[0]] + [getattr(m, f"layer{i}")[0].conv1[0].kernel_size[0] for i in range(1, 5)]
    assert temporal_kernels("mc2_18") == [3, 1, 1, 1, 1]
    assert temporal_kernels("mc5_18") == [3, 3, 3, 3, 1]
    assert temporal_kernels("rmc2_18") == [1, 3, 3, 3, 3]
    assert temporal_kernels("rmc5_18") == [1, 1, 1, 1, 3]
    assert MC[3] == ("3d", "2d", "2d", "2d") and RMC[4] == ("2d", "2d", "3d", "3d")


def test_r2d_fold_equals_2d_convolution_over_folded_channels():
    torch.manual_seed(0)
    m = lightvid.create_model("r2d_18", num_frames=4, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    w = m.stem[0].weight  # (O, C, T, 7, 7)
    folded = F.conv2d(x.reshape(1, 3 * 4, 32, 32), w.reshape(w.shape[0], 3 * 4, 7, 7), stride=2, padding=3)
    torch.testing.assert_close(m.stem[0](x)[:, :, 0], folded)  # (B, O, H/2, W/2)
    with pytest.raises(ValueError, match="num_frames=8"):
        m(torch.randn(1, 3, 8, 32, 32))


def test_midplanes_paper_vs_torchvision():
    paper = meta_model("r2plus1d_18", midplanes="paper")
    tv = meta_model("r2plus1d_18")
    # torchvision: one middle width per block, from the block's input and output widths
    assert tv.layer2[0].conv2[0][0].out_channels == midplanes_for(64, 128) == 230
    # paper: per convolution, so the pair has (about) the 3x3x3 convolution's parameters
    assert paper.layer2[0].conv1[0][0].out_channels == midplanes_for(64, 128) == 230
    assert paper.layer2[0].conv2[0][0].out_channels == midplanes_for(128, 128) == 288
    for block in (paper.layer3[0], paper.layer4[1]):
        for conv in (block.conv1[0], block.conv2[0]):
            n_in, mid, n_out = conv[0].in_channels, conv[0].out_channels, conv[3].out_channels
            pair, unit = conv[0].weight.numel() + conv[3].weight.numel(), 9 * n_in + 3 * n_out
            assert pair == mid * unit and pair <= n_in * n_out * 27 < pair + unit
    # the two differ only in the second convolution of each stage's first block (stages 2-4)
    diff = {k for k, v in paper.state_dict().items() if tv.state_dict()[k].shape != v.shape}
    assert {k.split(".conv2")[0] for k in diff} == {"layer2.0", "layer3.0", "layer4.0"}
    assert meta_model("r2plus1d_34").layer1[0].conv1[0][0].out_channels == midplanes_for(64, 64)


def test_deeper_variants_and_width():
    assert [len(getattr(meta_model("r3d_101"), f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    assert meta_model("r3d_50").num_features == 2048 and meta_model("r3d_34").num_features == 512
    assert meta_model("r2plus1d_50").layer1[0].conv2[0][3].kernel_size == (3, 1, 1)
    half = meta_model("r3d_18", width_mult=0.5)
    assert half.stem[0].out_channels == 32 and half.num_features == 256
    assert meta_model("ir_csn_26", in_chans=1).stem[0].in_channels == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        VideoResNet(depth=20)
    with pytest.raises(ValueError, match="conv_types"):
        VideoResNet(conv_types=("3d", "4d", "3d", "3d"))
    with pytest.raises(ValueError, match="bottleneck"):
        VideoResNet(depth=18, conv_types="ir")
    with pytest.raises(ValueError, match="midplanes"):
        lightvid.create_model("r2plus1d_18", midplanes="half")
    with pytest.raises(ValueError, match="stem"):
        VideoResNet(stem="4d")


# ---- weights= loading -----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pth", "safetensors", "state_dict", "model_state", "model", "lightning"])
def test_weights_loads_every_container(fmt, tmp_path):
    torch.manual_seed(0)
    src = lightvid.create_model("r3d_10", num_classes=5, width_mult=0.25).eval()
    sd = src.state_dict()
    if fmt == "safetensors":
        path = save_atomic(sd, tmp_path / "w.safetensors")
    elif fmt == "lightning":
        path = save_atomic({"state_dict": {"model." + k: v for k, v in sd.items()}, "epoch": 3}, tmp_path / "w.ckpt")
    elif fmt == "pth":
        path = save_atomic(sd, tmp_path / "w.pth")
    else:
        path = save_atomic({fmt: sd, "meta": {"epoch": 1}}, tmp_path / "w.pt")
    m = lightvid.create_model("r3d_10", num_classes=5, width_mult=0.25, weights=str(path)).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), src(x))


def test_weights_mismatch_is_a_clear_error(tmp_path):
    path = save_atomic({k: torch.zeros(v.shape) for k, v in lightvid.create_model(
        "r3d_18", num_classes=400).state_dict().items()}, tmp_path / "r3d.pth")
    with pytest.raises(CheckpointError) as e:
        lightvid.create_model("r2plus1d_18", num_classes=400, weights=str(path))
    msg = str(e.value)
    assert "\n" not in msg and "r3d.pth" in msg
    assert "missing keys [layer1.0.conv1.0.0.weight" in msg
    assert "unexpected keys [layer1.0.conv1.0.weight" in msg
    assert "differing shapes [stem.0.weight: file (64, 3, 3, 7, 7) vs model (45, 3, 1, 7, 7)" in msg


def test_weights_strict_false_only_when_asked(tmp_path):
    torch.manual_seed(0)
    src = lightvid.create_model("r3d_10", num_classes=5, width_mult=0.25)
    partial = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}
    path = save_atomic(partial, tmp_path / "backbone.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \[fc.bias, fc.weight\]"):
        lightvid.create_model("r3d_10", num_classes=5, width_mult=0.25, weights=str(path))
    m = lightvid.create_model("r3d_10", num_classes=5, width_mult=0.25, weights=str(path), strict=False)
    assert torch.equal(m.stem[0].weight, src.stem[0].weight)
    # a shape mismatch is never loaded, strict or not (here: a 400-class head into a 5-class model)
    full = save_atomic(lightvid.create_model("r3d_10", num_classes=400, width_mult=0.25).state_dict(),
                       tmp_path / "k400.pth")
    with pytest.raises(CheckpointError, match=r"differing shapes \[fc.bias: file \(400,\) vs model \(5,\)"):
        lightvid.create_model("r3d_10", num_classes=5, width_mult=0.25, weights=str(full), strict=False)


def test_weights_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        lightvid.create_model("r3d_10", weights=str(tmp_path / "absent.pth"))
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pth"):
        lightvid.create_model("r3d_10", weights=str(bad))
    empty = save_atomic({"epoch": 3}, tmp_path / "noweights.pt")
    with pytest.raises(CheckpointError, match="holds no state_dict"):
        lightvid.create_model("r3d_10", weights=str(empty))


# ---- inflation from a 2D ResNet ---------------------------------------------------------------

def test_inflate_from_resnet2d_per_frame_identity():
    from lightvid.models.resnet3d import inflate_from_resnet2d, resnet2d_key

    assert resnet2d_key("stem.0.weight") == "conv1.weight" and resnet2d_key("stem.1.running_var") == "bn1.running_var"
    assert resnet2d_key("layer2.0.conv2.1.bias") == "layer2.0.bn2.bias"
    assert resnet2d_key("layer3.1.conv3.0.weight") == "layer3.1.conv3.weight"
    assert resnet2d_key("layer2.0.downsample.0.weight") == "layer2.0.downsample.0.weight"
    torch.manual_seed(0)
    m2d = lightvid.create_model("resnet18", num_classes=5, width_mult=0.25).eval()
    _randomize_bn(m2d)
    for m in m2d.modules():  # BatchNorm2d too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.running_mean.normal_(0, 0.1)
    # f-R2D with the CSN paper's pool1 is a 2D ResNet-18 applied to each frame: a static clip gives its logits
    fr2d = inflate_from_resnet2d(m2d, lightvid.create_model("fr2d_18", num_classes=5, width_mult=0.25,
                                                            pool1=True)).eval()
    img = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fr2d(img.unsqueeze(2).expand(1, 3, 4, 32, 32)), m2d(img), rtol=1e-4, atol=1e-5)
    # R3D: kernels inflated (3x7x7 stem, 3x3x3 convs) and divided by the temporal size
    r3d = inflate_from_resnet2d(m2d, lightvid.create_model("r3d_18", num_classes=5, width_mult=0.25))
    torch.testing.assert_close(r3d.stem[0].weight.sum(2), m2d.conv1.weight)
    torch.testing.assert_close(r3d.layer4[1].conv2[0].weight[:, :, 1], m2d.layer4[1].conv2.weight / 3)
    with pytest.raises(UserError, match="no matching 2D tensor for fc.weight"):
        inflate_from_resnet2d(m2d, lightvid.create_model("r3d_18", num_classes=7, width_mult=0.25))
    inflate_from_resnet2d(m2d, lightvid.create_model("r3d_18", num_classes=7, width_mult=0.25), exclude=("fc",))
    with pytest.raises(UserError, match=r"stem.0.weight <- conv1.weight \(16, 3, 1, 7, 7\) vs \(11,"):
        inflate_from_resnet2d(m2d, lightvid.create_model("r2plus1d_18", num_classes=5, width_mult=0.25))


@pytest.mark.parametrize("depth,frames,params_m,gflops", [(34, 8, 63.6, 49.8), (34, 32, 63.6, 199.0),
                                                          (152, 32, 118.0, 329.1)])
def test_r2plus1d_vmz_figures_at_128(depth, frames, params_m, gflops):
    """VMZ's R(2+1)D-34/152 (per-convolution middle widths); its GFLOPs are MACs at 128x128 crops."""
    with torch.device("meta"):
        m = VideoResNet(depth, stem="2plus1d", conv_types="2plus1d", midplanes="paper", num_classes=400)
        macs = summarize(m, (3, frames, 128, 128)).macs
    assert abs(n_params(m) / 1e6 - params_m) / params_m < 0.01
    assert abs(macs / 1e9 - gflops) / gflops < 0.01


def test_pytorchvideo_layout_variants_have_the_model_zoo_figures():
    # PyTorchVideo's model zoo: Slow-R50 8x8 32.45M params, 54.52 GFLOPs (its fvcore counts MACs,
    # at a 256 px test crop); R(2+1)D-R50 16x4 28.11M params
    assert n_params(meta_model("slow_r50", num_classes=400)) == 32_454_096
    assert round(meta_macs("slow_r50", (3, 8, 256, 256), num_classes=400) / 1e9, 2) == 54.52
    assert n_params(meta_model("r2plus1d_50_pytorchvideo", num_classes=400)) == 28_107_600
    # MMAction2's R(2+1)D-34: the paper's middle widths (83 in the stem) and (2+1)D shortcuts
    m = meta_model("r2plus1d_34_mmaction", num_classes=400)
    assert m.stem[0].out_channels == 83 and m.layer2[0].downsample[0][0].out_channels == 3 * 64 * 128 // (64 + 384)
