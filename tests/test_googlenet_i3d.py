"""GoogLeNet (Inception-v1) figures against the lecture's Table 1, I3D, and inflation."""
import pytest
import torch

import lightvid
from lightvid.analysis.summary import group_rows, summarize
from lightvid.compress.inflate import inflate, inflate_tensor
from lightvid.errors import UserError
from lightvid.models.googlenet import INCEPTION_V1, GoogLeNetOutputs, googlenet_loss

# Table 1 of Szegedy et al. as printed in the modern-ConvNets lecture: params in K (=1024 weights), ops in M.
TABLE1 = {
    "conv1": (2.7, 34), "conv2": (112, 360),
    "inception3a": (159, 128), "inception3b": (380, 304),
    "inception4a": (364, 73), "inception4b": (437, 88), "inception4c": (463, 100),
    "inception4d": (580, 119), "inception4e": (840, 170),
    "inception5a": (1072, 54), "inception5b": (1388, 71),
}
# What lightvid computes at 3x224x224 (weights without biases, MACs): the golden figures.
COMPUTED = {
    "conv1": (9_408, 118_013_952), "conv2": (114_688, 359_661_568),
    "inception3a": (163_328, 128_049_152), "inception3b": (388_096, 304_267_264),
    "inception4a": (375_552, 73_608_192), "inception4b": (448_512, 87_908_352),
    "inception4c": (509_440, 99_850_240), "inception4d": (604_672, 118_515_712),
    "inception4e": (867_328, 169_996_288), "inception5a": (1_042_432, 51_079_168),
    "inception5b": (1_442_816, 70_697_984),
}
# Rows where the table disagrees with its own widths (documented in docs/googlenet_i3d.md).
PARAM_DIFFS = {"conv1", "inception4a", "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"}
OPS_DIFFS = {"conv1", "inception5a"}


def _meta_summary(name, size, **kw):
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        return summarize(lightvid.create_model(name, **kw), size, name)


@pytest.fixture(scope="module")
def googlenet_rows():
    s = _meta_summary("googlenet", (3, 224, 224))
    weights = {}
    with torch.device("meta"):
        m = lightvid.create_model("googlenet")
    for n, p in m.named_parameters():
        if n.endswith("weight"):
            top = n.split(".")[0]
            weights[top] = weights.get(top, 0) + p.numel()
    return s, {r.name: r for r in group_rows(s.layers, 1)}, weights


def test_googlenet_totals(googlenet_rows):
    s, _, _ = googlenet_rows
    assert s.params == 6_998_552
    assert s.params_head == 1_025_000
    assert s.macs == 1_582_671_872


def test_googlenet_per_module_vs_table1(googlenet_rows):
    _, rows, weights = googlenet_rows
    for name, (w, macs) in COMPUTED.items():
        assert weights[name] == w, name
        assert rows[name].macs == macs, name
        table_k, table_m = TABLE1[name]
        assert (abs(w / 1024 - table_k) <= 1.0) == (name not in PARAM_DIFFS), name
        assert (abs(macs / 1e6 - table_m) <= 1.0) == (name not in OPS_DIFFS), name
    # the widths are the table's: 4c's 1x1 128 + 3x3 256 + 5x5 64 + pool proj 64 = 512 channels
    assert sum(INCEPTION_V1["inception4c"][i] for i in (0, 2, 4, 5)) == 512
    assert rows["fc"].params == 1_025_000 and rows["fc"].macs == 1_024_000


def test_variant_and_i3d_counts():
    assert _meta_summary("googlenet_bn", (3, 224, 224)).params == 6_624_904  # = torchvision's GoogLeNet
    s = _meta_summary("i3d", (3, 64, 224, 224))
    assert s.params == 12_697_264
    assert s.macs == 111_150_686_208
    assert s.layers[-1].out_shape == [400]
    assert _meta_summary("googlenet", (3, 224, 224), aux_logits=True).params == 13_378_280
    assert _meta_summary("i3d", (3, 16, 112, 112), batch_norm=False, lrn=True, b3_kernel=5,
                         pool4_kernel=3).params == 15_023_168


def test_i3d_shapes_follow_the_paper():
    s = _meta_summary("i3d", (3, 64, 224, 224))
    rows = {r.name: r.out_shape for r in group_rows(s.layers, 1)}
    assert rows["pool1"] == [64, 32, 56, 56]  # 1x3x3 pool keeps time
    assert rows["pool2"] == [192, 32, 28, 28]
    assert rows["pool3"] == [480, 16, 14, 14]
    assert rows["pool4"] == [832, 8, 7, 7]


def test_googlenet_aux_logits():
    torch.manual_seed(0)
    m = lightvid.create_model("googlenet", num_classes=5, width_mult=0.25, aux_logits=True)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 3])
    out = m.train()(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert out.logits.shape == out.aux1.shape == out.aux2.shape == (2, 5)
    loss = googlenet_loss(out, y)
    expected = sum(w * torch.nn.functional.cross_entropy(o, y) for w, o in zip((1, 0.3, 0.3), out))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert m.aux1.fc2.weight.grad is not None and m.conv1.conv.weight.grad is not None
    m.eval()
    assert m(x).shape == (2, 5)
    m.reset_classifier(3)
    assert m.aux2.fc2.out_features == 3
    assert {"aux1", "aux2"} <= set(m.head_names)
    assert "aux1.fc1.weight" not in lightvid.create_model("googlenet", width_mult=0.25).state_dict()


def _randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.copy_(torch.rand(mod.num_features, generator=g) - 0.5)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.rand(mod.num_features, generator=g) - 0.5)


@pytest.mark.parametrize("twin,kw3d", [
    ("googlenet_bn", {}),
    ("googlenet", dict(batch_norm=False, lrn=True, b3_kernel=5, pool4_kernel=3)),
])
def test_inflated_i3d_on_boring_video_equals_2d(twin, kw3d):
    torch.manual_seed(0)
    m2 = lightvid.create_model(twin, num_classes=6, width_mult=0.25)
    _randomize_bn(m2)
    m2.eval()
    m3 = lightvid.create_model("i3d", num_classes=6, width_mult=0.25, temporal_pad="replicate", **kw3d).eval()
    assert inflate(m2, m3) is m3
    frame = torch.randn(2, 3, 64, 64)
    boring = frame.unsqueeze(2).repeat(1, 1, 8, 1, 1)  # (B, C, T, H, W), the frame T times
    with torch.no_grad():
        out2d, out3d = m2(frame), m3(boring)
    assert out2d.abs().max() > 1e-3  # a non-trivial output
    torch.testing.assert_close(out3d, out2d, rtol=1e-4, atol=1e-5)


def test_zero_temporal_padding_breaks_the_identity():
    """The documented condition: with zero temporal padding the edge frames see zeros."""
    torch.manual_seed(0)
    m2 = lightvid.create_model("googlenet_bn", num_classes=6, width_mult=0.25)
    _randomize_bn(m2)
    m2.eval()
    m3 = inflate(m2, lightvid.create_model("i3d", num_classes=6, width_mult=0.25).eval())
    frame = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out2d = m2(frame)
        diff = (m3(frame.unsqueeze(2).repeat(1, 1, 8, 1, 1)) - out2d).abs().max()
    assert diff > 1e-2 * out2d.abs().max()


def test_inflate_tensor_and_copies():
    w = torch.randn(4, 3, 5, 5)
    w3 = inflate_tensor(w, 7)
    assert w3.shape == (4, 3, 7, 5, 5)
    torch.testing.assert_close(w3.sum(2), w)
    m2 = lightvid.create_model("googlenet_bn", num_classes=6, width_mult=0.25)
    m3 = inflate(m2, lightvid.create_model("i3d", num_classes=6, width_mult=0.25))
    torch.testing.assert_close(m3.conv1.conv.weight[:, :, 3], m2.conv1.conv.weight / 7)
    torch.testing.assert_close(m3.inception4c.branch2.conv.bn.running_var, m2.inception4c.branch2.conv.bn.running_var)
    torch.testing.assert_close(m3.fc.weight, m2.fc.weight)


def test_inflate_errors_name_the_keys():
    small = dict(width_mult=0.25)
    with pytest.raises(UserError, match="no 2D source.*conv1.bn"):  # no batch norm in the paper's model
        inflate(lightvid.create_model("googlenet", **small), lightvid.create_model("i3d", **small))
    with pytest.raises(UserError, match="branch3.conv.conv.weight"):  # 5x5 cannot become 3x3x3
        inflate(lightvid.create_model("googlenet_bn", b3_kernel=5, **small), lightvid.create_model("i3d", **small))
    m2 = lightvid.create_model("googlenet_bn", num_classes=1000, **small)
    m3 = lightvid.create_model("i3d", num_classes=400, **small)
    with pytest.raises(UserError, match="fc.weight.*exclude"):
        inflate(m2, m3)
    fc_before = m3.fc.weight.clone()
    inflate(m2, m3, exclude=("fc",))
    assert torch.equal(m3.fc.weight, fc_before)
    torch.testing.assert_close(m3.conv2.conv.conv.weight.sum(2), m2.conv2.conv.conv.weight)
    aux = lightvid.create_model("googlenet_bn", num_classes=400, aux_logits=True, **small)
    with pytest.raises(UserError, match="no 3D target.*aux1"):
        inflate(aux, m3)
    inflate(aux, m3, strict=False)
    assert lightvid.inflate is inflate  # the lazy top-level name


def test_i3d_rejects_bad_padding():
    with pytest.raises(ValueError, match="temporal_pad"):
        lightvid.create_model("i3d", temporal_pad="reflect")


def test_grouped_rows_show_each_block_s_own_output():
    s = _meta_summary("googlenet", (3, 224, 224))
    rows = {r.name: r.out_shape for r in group_rows(s.layers, 1, s.module_shapes)}
    assert rows["inception3a"] == [256, 28, 28]  # the concatenation, not the last branch
    assert rows["inception5b"] == [1024, 7, 7]
