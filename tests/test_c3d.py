"""Golden figures of the C3D family (the C3D compression document) and the summary conventions."""
import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import lightvid
from lightvid.analysis.summary import build_and_summarize, summarize
from lightvid.cli import main
from lightvid.errors import UserError

BODY_PARAMS = {
    "c3d": 27_655_936,
    "c3d_2plus1d": 12_823_616,
    "c3d_mc3": 89_887_488,
    "c3d_mc4": 54_790_400,
    "c3d_mc5": 27_656_448,
}


@pytest.mark.parametrize("name,expected", BODY_PARAMS.items())
def test_body_params_match_seed_000(name, expected):
    with torch.device("meta"):
        m = lightvid.create_model(name, num_classes=101)
    head = sum(p.numel() for p in m.head_parameters())
    assert sum(p.numel() for p in m.parameters()) - head == expected


def test_c3d_101_classes_total():
    with torch.device("meta"):
        m = lightvid.create_model("c3d", num_classes=101)
    assert sum(p.numel() for p in m.parameters()) == 78_409_573


def test_mc4_layers_are_seed_000s():
    with torch.device("meta"):
        m = lightvid.create_model("c3d_mc4")
    got = {n: (m_.in_channels, m_.out_channels) for n, m_ in m.named_modules() if isinstance(m_, torch.nn.Conv2d)}
    assert got == {"conv4a": (1024, 2048), "conv4b": (2048, 1024), "conv5a": (1024, 1024), "conv5b": (1024, 512)}
    assert m.pool5.padding == 1 and m.pool4.kernel_size == 2


def test_c3d_macs_and_flop_counter_agree():
    s = build_and_summarize("c3d")
    assert round(s.macs / 1e9, 2) == 38.55
    assert s.flops == 2 * s.macs
    assert s.params_features == 27_655_936
    # the hook-based count equals PyTorch's own FLOP counter for a conv/linear network
    m = lightvid.create_model("c3d", width_mult=0.25).eval()
    x = torch.zeros(1, 3, 16, 56, 56)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(x)
    assert summarize(m, x.shape[1:]).flops == fc.get_total_flops()


def test_summary_json_cli(capsys):
    assert main(["summary", "c3d_mc4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params_features"] == 54_790_400
    for key in ("model", "input", "num_classes", "params", "params_head", "macs", "flops", "layers"):
        assert key in out
    assert {"name", "type", "out_shape", "params", "macs"} <= set(out["layers"][0])
    assert sum(layer["params"] for layer in out["layers"]) == out["params"]


def test_summary_kw_and_bad_input(capsys):
    assert main(["summary", "c3d", "--kw", "width_mult=0.5", "--num-classes", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["num_classes"] == 10
    with pytest.raises(UserError, match="cannot take input"):
        build_and_summarize("c3d_mc4", (3, 8, 112, 112))
    assert main(["summary", "c3d_mc4", "--input", "3x8x112x112"]) == 2
    assert "cannot take input" in capsys.readouterr().err
    assert main(["summary", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_list_cli(capsys):
    assert main(["list", "c3d*"]) == 0
    out = capsys.readouterr().out
    assert "c3d_mc4" in out and "3x16x112x112" in out


def test_bad_model_kwargs_are_one_line_errors(capsys):
    assert main(["summary", "c3d", "--kw", "foo=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unexpected keyword argument 'foo'" in err[0]
    assert main(["summary", "c3d", "--kw", "conv_type='4d'"]) == 2
    assert "conv_type must be" in capsys.readouterr().err
