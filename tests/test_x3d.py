"""X3D golden figures: parameters and MACs against the SlowFast / pytorchvideo model zoos."""
import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.analysis.summary import build_and_summarize
from lightvid.models.x3d import SqueezeExcite3d, X3DBlock, round_width

# SlowFast MODEL_ZOO.md (X3D, K400): params 3.8M, "FLOPs (G)" at the expansion input, which
# fvcore counts as multiply-adds (our MACs); it rounds our count without the 400-way fc
# (0.82M MACs; fvcore versions of 2020 did not count ``aten::linear``).
SLOWFAST_ZOO = {"x3d_xs": ((3, 4, 160, 160), 0.60), "x3d_s": ((3, 13, 160, 160), 1.96),
                "x3d_m": ((3, 16, 224, 224), 4.73)}
# pytorchvideo model_zoo.md: 0.91 / 2.96 / 6.72 GFLOPs x views at the 3-crop test size
# (182, 182, 256); params 3.79M.
PYTORCHVIDEO_ZOO = {"x3d_xs": ((3, 4, 182, 182), 0.91), "x3d_s": ((3, 13, 182, 182), 2.96),
                    "x3d_m": ((3, 16, 256, 256), 6.72)}


def meta_summary(name, size):
    with torch.device("meta"):  # shapes only
        return build_and_summarize(name, size)


@pytest.mark.parametrize("name", list(SLOWFAST_ZOO))
def test_params_and_macs_match_slowfast_zoo(name):
    size, gflops = SLOWFAST_ZOO[name]
    s = meta_summary(name, None)
    assert tuple(s.input) == size  # the default input is the zoo's
    assert s.params == 3_794_322  # 3.79M (pytorchvideo), 3.8M (SlowFast), 400 classes
    fc = next(r.macs for r in s.layers if r.name == "fc")
    assert fc == 2048 * 400 and round((s.macs - fc) / 1e9, 2) == gflops
    assert abs(s.macs / 1e9 - gflops) < 0.006
    assert s.macs == {"x3d_xs": 605_256_512, "x3d_s": 1_962_892_112, "x3d_m": 4_732_468_736}[name]


@pytest.mark.parametrize("name", list(PYTORCHVIDEO_ZOO))
def test_pytorchvideo_zoo_counts_batchnorm(name):
    """pytorchvideo's figures are at the test crop and add fvcore's 5 FLOPs per BN output element."""
    size, gflops = PYTORCHVIDEO_ZOO[name]
    s = meta_summary(name, size)
    bn = sum(torch.Size(r.out_shape).numel() for r in s.layers if r.type == "BatchNorm3d")
    assert round(s.macs / 1e9, 2) < gflops  # the plain MAC count alone falls short ...
    assert abs((s.macs + 5 * bn) / 1e9 - gflops) < 0.006  # ... BN counted: 0.910, 2.955, 6.723


def test_architecture_table():
    with torch.device("meta"):
        m = lightvid.create_model("x3d_m")
    stages = [getattr(m, f"res{i}") for i in range(2, 6)]
    assert [len(s) for s in stages] == [3, 5, 11, 7]
    assert [s[0].conv_c.out_channels for s in stages] == [24, 48, 96, 192]
    assert [s[0].conv_a.out_channels for s in stages] == [54, 108, 216, 432]
    for s in stages:
        assert [isinstance(b.se, SqueezeExcite3d) for b in s] == [i % 2 == 0 for i in range(len(s))]
        assert all(b.conv_b.groups == b.conv_b.in_channels for b in s)  # depthwise 3x3x3
        assert s[0].conv_b.stride == (1, 2, 2) and s[0].proj is not None
    assert [s[0].se.fc1.out_channels for s in stages] == [8, 8, 16, 32]
    assert m.stem_xy.kernel_size == (1, 3, 3) and m.stem_t.kernel_size == (5, 1, 1) and m.stem_t.groups == 24
    assert (m.conv5.out_channels, m.lin5.out_features, m.num_features) == (432, 2048, 2048)
    assert any(isinstance(x, nn.SiLU) for x in m.modules())
    assert round_width(12, 2.0) == 24 and round_width(432, 0.0625) == 32 and round_width(54, 0.0625) == 8


def test_forward_eval_and_features():
    torch.manual_seed(0)
    m = lightvid.create_model("x3d_xs", num_classes=5, width_mult=0.25).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        feats = m.forward_features(x)
        assert feats.shape[2:] == (4, 1, 1)  # T kept, H and W / 32
        assert m(x).shape == (2, 5)
        m.reset_classifier(0)
        assert m(x).shape == (2, m.num_features)
    # every block starts as the identity branch (zeroed last BN): outputs are finite, non-constant
    assert torch.isfinite(feats).all() and feats.std() > 0
    assert isinstance(X3DBlock(8, 18, 8, 1, 0.0).se, nn.Identity)


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from lightvid.accel.export import export_onnx

    torch.manual_seed(0)
    m = lightvid.create_model("x3d_xs", num_classes=4, width_mult=0.25).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    path = tmp_path / "x3d.onnx"
    export_onnx(m, path, x)  # the torch.export-based exporter
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), m(x), atol=1e-4, rtol=1e-3)
