"""Image models: golden parameter counts, torchvision key names, the scene-recognition report's CIFAR nets,
STN, highway."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import lightvid
from lightvid.analysis.summary import group_rows, summarize
from lightvid.cli import main
from lightvid.models.densenet import remap_legacy_keys
from lightvid.models.highway import HighwayConv2d, HighwayLinear
from lightvid.models.resnet import BasicBlock, PreActBasicBlock
from lightvid.models.stn import SpatialTransformer, SpatialTransformerClassifier

TV_KEYS = json.loads((Path(__file__).parent / "data" / "torchvision_image_keys.json").read_text())

# 3x224x224 / 1000 classes (VGG paper Table 2, torchvision), 3x32x32 / 10 classes (the scene-recognition report)
GOLDEN_PARAMS = {
    "vgg11": 132_863_336,
    "vgg11_lrn": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16_c": 133_638_952,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "googlenet_cifar": 6_158_538,
    "resnet18_cifar": 11_173_962,
}


def meta_model(name, **kwargs):
    with torch.device("meta"):
        return lightvid.create_model(name, **kwargs)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", GOLDEN_PARAMS.items())
def test_golden_parameter_counts(name, expected):
    assert n_params(meta_model(name)) == expected


@pytest.mark.parametrize("name,gmacs", [("resnet18", 1.81), ("resnet50", 4.09), ("resnext50_32x4d", 4.23),
                                          ("vgg16", 15.47), ("densenet121", 2.83)])
def test_macs_match_torchvisions_published_figures(name, gmacs):
    """torchvision's model table lists these "GFLOPS" (multiply-accumulates) at 3x224x224."""
    with torch.device("meta"):
        s = summarize(lightvid.create_model(name), (3, 224, 224))
    assert round(s.macs / 1e9, 2) == gmacs


def test_width_mult_and_classes_shrink_models():
    assert n_params(meta_model("resnet18", width_mult=0.5)) < 11_689_512 / 3
    assert n_params(meta_model("vgg16", num_classes=10)) == 138_357_544 - 4096 * 990 - 990


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "densenet121"])
def test_state_dict_keys_are_torchvisions(name):
    got = {k: list(v.shape) for k, v in meta_model(name).state_dict().items()}
    assert list(got) == list(TV_KEYS[name])  # same names, same order
    assert got == TV_KEYS[name]


def test_torchvision_resnet18_checkpoint_loads_strict(tmp_path):
    torch.manual_seed(0)
    state = {k: torch.randn(shape) if shape else torch.tensor(0) for k, shape in TV_KEYS["resnet18"].items()}
    path = tmp_path / "resnet18-tv.pth"
    torch.save(state, path)
    model = lightvid.create_model("resnet18", weights=str(path))
    torch.testing.assert_close(model.fc.weight, state["fc.weight"])
    torch.testing.assert_close(model.layer3[1].bn2.running_var, state["layer3.1.bn2.running_var"])
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_densenet_legacy_keys_are_remapped():
    model = lightvid.create_model("densenet121", width_mult=0.25, num_classes=5)
    state = model.state_dict()
    legacy = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v.clone() + 1 for k, v in state.items()
              if k.endswith(("weight", "bias", "running_mean", "running_var"))}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert set(remap_legacy_keys(legacy)) == {k for k in state if not k.endswith("num_batches_tracked")}
    missing, unexpected = model.load_state_dict(legacy, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    torch.testing.assert_close(model.features.denseblock2.denselayer3.conv2.weight,
                               legacy["features.denseblock2.denselayer3.conv.2.weight"])


def test_densenet_legacy_file_loads_strictly_through_create_model(tmp_path):
    state = lightvid.create_model("densenet121", width_mult=0.25, num_classes=5).state_dict()
    legacy = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v + 1 for k, v in state.items()
              if not k.endswith("num_batches_tracked")}
    torch.save(legacy, tmp_path / "old.pth")
    model = lightvid.create_model("densenet121", width_mult=0.25, num_classes=5, weights=str(tmp_path / "old.pth"))
    torch.testing.assert_close(model.features.denseblock1.denselayer2.norm1.weight,
                               legacy["features.denseblock1.denselayer2.norm.1.weight"])


def _shapes(name, input_size):
    with torch.device("meta"):  # shapes and counts without arithmetic
        model = lightvid.create_model(name)
        s = summarize(model, input_size)
    return {r.name: (r.out_shape, r.params) for r in group_rows(s.layers, 1)}, s


def test_googlenet_cifar_is_seed_004s_mynet():
    rows, s = _shapes("googlenet_cifar", (3, 32, 32))
    # per-module parameter sums of the seed's printed summary table
    seed = {"inception_3a": 165_152, "inception_3b": 423_360, "inception_4a": 385_344, "inception_4b": 462_224,
            "inception_4c": 523_184, "inception_4d": 610_304, "inception_4e": 951_552, "inception_5a": 1_126_656,
            "inception_5b": 1_494_752, "conv": 5_376 + 384, "fc": 10_250}
    assert {k: rows[k][1] for k in seed} == seed
    assert rows["maxpool_3"][0] == [480, 16, 16] and rows["maxpool_4"][0] == [832, 8, 8]
    assert rows["avgpool"][0] == [1024, 1, 1]
    m = meta_model("googlenet_cifar")
    outs = [m.inception_3a, m.inception_3b, m.inception_4a, m.inception_4d, m.inception_4e, m.inception_5b]
    assert [i.out_channels for i in outs] == [256, 480, 512, 528, 832, 1024]
    assert m.dropout.p == 0.2 and m.inception_3a.branch3[2].bn.eps == 1e-3 and m.conv[0].bias is not None
    assert len(m.inception_5b.branch3) == 3 and m.inception_5b.branch3[1].conv.kernel_size == (3, 3)


def test_resnet18_cifar_is_seed_004s():
    rows, _ = _shapes("resnet18_cifar", (3, 32, 32))
    assert rows["conv1"] == ([64, 36, 36], 1_728)  # 3x3, stride 1, padding 3
    assert isinstance(meta_model("resnet18_cifar").maxpool, nn.Identity)
    assert [rows[f"layer{i}"][0] for i in (2, 3, 4)] == [[128, 18, 18], [256, 9, 9], [512, 5, 5]]
    assert rows["fc"] == ([10], 5_130)


def test_vgg_configurations():
    c = meta_model("vgg16_c")
    kernels = [m.kernel_size[0] for m in c.features if isinstance(m, nn.Conv2d)]
    assert kernels == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]
    lrn = meta_model("vgg11_lrn").features
    assert isinstance(lrn[2], nn.LocalResponseNorm) and isinstance(lrn[3], nn.MaxPool2d)
    assert sum(isinstance(m, nn.Conv2d) for m in meta_model("vgg19").features) == 16
    assert sum(isinstance(m, nn.BatchNorm2d) for m in meta_model("vgg19_bn").features) == 16
    with pytest.raises(ValueError, match="config must be one of"):
        from lightvid.models.vgg import VGG
        VGG("F")


def test_resnext_and_preact_structure():
    x = meta_model("resnext50_32x4d")
    assert x.layer1[0].conv2.groups == 32 and x.layer1[0].conv2.out_channels == 128
    assert x.layer4[0].conv3.out_channels == 2048
    p = meta_model("preact_resnet18")
    assert isinstance(p.layer2[0], PreActBasicBlock) and isinstance(p.bn_final, nn.BatchNorm2d)
    with pytest.raises(ValueError, match="stem"):
        lightvid.create_model("resnet18", stem="tiny")


def test_preactivation_unit_is_a_clean_identity():
    """With its branch zeroed a full pre-activation unit passes x unchanged; a post-activation one applies ReLU."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    pre, post = PreActBasicBlock(8, 8).eval(), BasicBlock(8, 8).eval()
    for block in (pre, post):
        nn.init.zeros_(block.conv2.weight)
    with torch.no_grad():
        torch.testing.assert_close(pre(x), x)
        torch.testing.assert_close(post(x), x.relu())


def test_densenet_memory_efficient_matches():
    torch.manual_seed(0)
    a = lightvid.create_model("densenet121", width_mult=0.25, num_classes=4)
    b = lightvid.create_model("densenet121", width_mult=0.25, num_classes=4, memory_efficient=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb)
    yb.sum().backward()
    assert b.features.denseblock1.denselayer1.conv1.weight.grad is not None


def test_highway_gates_carry_and_transform():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 5, 5)
    carry, transform = HighwayConv2d(6, gate_bias=-40.0), HighwayConv2d(6, gate_bias=40.0)
    for layer in (carry, transform):
        layer.reset_gate()
        nn.init.zeros_(layer.conv_t.weight)
    with torch.no_grad():
        torch.testing.assert_close(carry(x), x)  # T = 0: the input is carried
        torch.testing.assert_close(transform(x), torch.relu(transform.conv_h(x)))  # T = 1: H(x)
        mix = HighwayLinear(4)
        v = torch.randn(3, 4)
        t = torch.sigmoid(mix.t(v))
        torch.testing.assert_close(mix(v), torch.relu(mix.h(v)) * t + v * (1 - t))
    real = lightvid.create_model("highway_cifar", width_mult=0.25)
    assert torch.all(real.stages[1][3].conv_t.bias == -2.0)
    with pytest.raises(ValueError, match="built for 32x32"):
        lightvid.create_model("highway_mlp")(torch.randn(1, 3, 28, 28))


def test_identity_spatial_transformer_leaves_input_unchanged():
    torch.manual_seed(0)
    stn = SpatialTransformer(in_chans=3)
    x = torch.randn(2, 3, 20, 28)
    theta = stn.theta(x)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3))
    torch.testing.assert_close(stn(x), x)
    # the sampler's convention: theta = [[-1, 0, 0], [0, 1, 0]] mirrors the image left-right
    flip = torch.tensor([[[-1.0, 0, 0], [0, 1.0, 0]]]).expand(2, 2, 3)
    torch.testing.assert_close(stn.transform(x, flip), x.flip(-1))
    # a 2x zoom-out (theta = 2I) puts the image, half size, in the middle of zeros
    zoom = stn.transform(torch.ones(1, 1, 8, 8), torch.tensor([[[2.0, 0, 0], [0, 2.0, 0]]]))
    assert zoom[0, 0, 0, 0] == 0 and zoom[0, 0, 4, 4] == 1
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        stn(torch.randn(1, 3, 4, 8, 8))


def test_stn_wrapper_starts_as_the_backbone_and_learns():
    torch.manual_seed(0)
    backbone = lightvid.create_model("resnet18_cifar", width_mult=0.25).eval()
    model = SpatialTransformerClassifier(backbone).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), backbone(x))
    assert model.num_classes == 10 and model.get_classifier() is backbone.fc
    assert sum(p.numel() for p in model.head_parameters()) == 128 * 10 + 10
    model.train()
    model(x).logsumexp(1).sum().backward()
    assert model.stn.fc_loc[2].weight.grad.abs().sum() > 0  # the localisation net receives gradient
    with pytest.raises(ValueError, match="image Classifier"):
        SpatialTransformerClassifier(lightvid.create_model("c3d", width_mult=0.125))
    assert lightvid.create_model("stn_resnet18_cifar", width_mult=0.25, stn_hidden=16).stn.fc_loc[2].in_features == 16


def test_summary_cli_on_image_models(capsys):
    assert main(["summary", "googlenet_cifar", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 6_158_538 and out["input"] == [3, 32, 32] and out["params_head"] == 10_250
    assert main(["list", "vgg*"]) == 0
    assert "vgg16_c" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.realdata
def test_lightvid_train_resnet18_cifar_on_cifar10_zip(shared_data, tmp_path):
    """configs/cifar10_resnet18.yaml runs through the video pipeline (images are T=1), cut to a few batches."""
    from lightvid.run_spec import load_model
    from lightvid.train.config import load_config
    from lightvid.train.run import train

    config = Path(__file__).resolve().parents[1] / "configs" / "cifar10_resnet18.yaml"
    cfg = load_config(config, [f"data.root={shared_data / 'cifar10-jpeg.zip'}", "model.kwargs.width_mult=0.125",
                               "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.batch_size=32",
                               "trainer.limit_val_batches=2", "trainer.final_eval=false",
                               "trainer.progress_bar=false", "trainer.log_every_n_steps=1",
                               "data.num_workers=0"])
    report = train(cfg, tmp_path / "run")
    assert report["train_clips"] == 50_000 and report["val_clips"] == 10_000
    assert 0.0 <= report["val_top1_clip"] <= 1.0
    model, meta = load_model(report["best_checkpoint"])
    assert meta["model"] == "resnet18_cifar" and len(meta["classes"]) == 10 and "airplane" in meta["classes"]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
