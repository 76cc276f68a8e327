"""Kernel breakdown: oneDNN's verbose log and OpenVINO's counters grouped alike; the benchmark's output file."""
import json

import pytest
import torch
import torch.nn as nn
from benchmark_scripts import load_benchmark

import lightvid
from lightvid.accel import backends
from lightvid.accel import breakdown as BD
from lightvid.accel import onednn_graph as G
from lightvid.accel.optimize import fold_batchnorms
from lightvid.errors import UserError

needs_graph = pytest.mark.skipif(not G.available(), reason="this PyTorch has no oneDNN Graph fuser")
needs_openvino = pytest.mark.skipif(not backends.available("openvino"), reason="OpenVINO is not installed")

VERBOSE = """\
onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71)
onednn_verbose,v1,primitive,create:cache_hit,cpu,convolution,brgconv_1x1:avx512_core,forward_training,src:f32,,,mb1_ic24oc54_id16od16kd1sd1dd0pd0_ih28oh28kh1sh1dh0ph0_iw28ow28kw1sw1dw0pw0,0.01
onednn_verbose,v1,primitive,exec,cpu,convolution,brgconv_1x1:avx512_core,forward_training,src:f32,,,mb1_ic24oc54_id16od16kd1sd1dd0pd0_ih28oh28kh1sh1dh0ph0_iw28ow28kw1sw1dw0pw0,0.5
onednn_verbose,v1,primitive,exec,cpu,convolution,brdgmm_dw:avx512_core,forward_training,src:f32,,,g54mb1_ic54oc54_id16od16kd3sd1dd0pd1_ih28oh28kh3sh1dh0ph1_iw28ow28kw3sw1dw0pw1,0.25
onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core,forward_training,src:f32,,,mb1_ic3oc24_id16od16kd1sd1dd0pd0_ih112oh56kh3sh2dh0ph1_iw112ow56kw3sw2dw0pw1,1.0
onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,src:f32,,,g2mb1_ic8oc8_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1,0.125
onednn_verbose,v1,primitive,exec,cpu,eltwise,jit:avx512_core,forward_training,src:f32,,alg:eltwise_logistic,1x54x16x28x28,0.0625
onednn_verbose,v1,primitive,exec,cpu,binary,jit:uni,undef,src:f32,,alg:binary_mul,1x54x16x28x28:1x54x16x28x28,0.0625
onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:f32 dst:f32,,,1x3x16x112x112,0.75
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx2,undef,src:f32,,,1x432:432x2048,0.2
onednn_verbose,v1,graph,exec,cpu,100276,convolution_post_ops,dnnl_backend,in0_f32:0:strided,,fpm:strict,2.0
onednn_verbose,v1,primitive,exec,cpu,convolution,not-a-time
garbage line
"""


def test_conv_category():
    assert BD.conv_category(1, 24, (1, 1, 1)) == BD.CONV_1X1
    assert BD.conv_category(4, 6, (1, 1, 1)) == BD.CONV_1X1  # a grouped 1x1x1 is still 1x1x1
    assert BD.conv_category(54, 1, (3, 3, 3)) == BD.CONV_DW
    assert BD.conv_category(54, 1, (5, 1, 1)) == BD.CONV_DW
    assert BD.conv_category(2, 4, (3, 3)) == BD.CONV_OTHER  # grouped, not depthwise
    assert BD.conv_category(1, 3, (1, 3, 3)) == BD.CONV_OTHER


def test_parse_onednn_verbose_groups_exec_lines_and_skips_the_rest():
    log = BD.parse_onednn_verbose(VERBOSE)
    assert dict(log.kernels_ms) == {BD.CONV_1X1: 0.5, BD.CONV_DW: 0.25, BD.CONV_OTHER: 1.125,
                                    BD.ELEMENTWISE: 0.125, BD.REORDER: 0.75, BD.MATMUL: 0.2}
    assert dict(log.kernels_n) == {BD.CONV_1X1: 1, BD.CONV_DW: 1, BD.CONV_OTHER: 2, BD.ELEMENTWISE: 2,
                                   BD.REORDER: 1, BD.MATMUL: 1}
    assert (log.partitions_ms, log.partitions_n) == (2.0, 1)
    # the older format without the "v1" field reads the same
    old = BD.parse_onednn_verbose(VERBOSE.replace("onednn_verbose,v1,", "onednn_verbose,"))
    assert dict(old.kernels_ms) == dict(log.kernels_ms)


def test_openvino_node_category():
    assert BD.openvino_node_category("Convolution", [54, 24, 1, 1, 1]) == BD.CONV_1X1
    assert BD.openvino_node_category("Convolution", [24, 3, 1, 3, 3]) == BD.CONV_OTHER
    assert BD.openvino_node_category("GroupConvolution", [54, 1, 1, 3, 3, 3]) == BD.CONV_DW
    assert BD.openvino_node_category("GroupConvolution", [2, 4, 4, 3, 3]) == BD.CONV_OTHER
    assert BD.openvino_node_category("Subgraph", None) == BD.ELEMENTWISE
    assert BD.openvino_node_category("AvgPool", None) == BD.POOLING
    assert BD.openvino_node_category("FullyConnected", [10, 432]) == BD.MATMUL
    assert BD.openvino_node_category("Reorder", None) == BD.REORDER
    assert BD.openvino_node_category("Interpolate", None) == BD.OTHER


def _count_convs(model: nn.Module) -> tuple[int, int]:
    """(1x1x1, depthwise) Conv3d modules of ``model``."""
    ones = sum(isinstance(m, nn.Conv3d) and all(k == 1 for k in m.kernel_size) for m in model.modules())
    dw = sum(isinstance(m, nn.Conv3d) and m.groups > 1 and m.groups == m.in_channels
             and not all(k == 1 for k in m.kernel_size) for m in model.modules())
    return ones, dw


@needs_graph
def test_onednn_log_sees_every_convolution_of_the_graph_model():
    torch.manual_seed(0)
    model = lightvid.create_model("x3d_s", num_classes=5, width_mult=0.25).eval()
    fold_batchnorms(model)
    x = torch.randn(1, 3, 4, 32, 32)
    graph = G.build(model, x)
    assert graph is not None
    log = BD.onednn_log(graph, x, calls=2)
    assert log.wall_ms >= sum(log.kernels_ms.values())  # the calls' own time holds their kernels
    ones, dw = _count_convs(model)
    assert (log.kernels_n[BD.CONV_1X1], log.kernels_n[BD.CONV_DW]) == (ones, dw)
    assert log.partitions_n > 0 and log.partitions_ms >= sum(log.kernels_ms[c] for c in (BD.CONV_1X1, BD.CONV_DW))
    # the captured log went to the parser, not to the terminal, and verbose mode is off again
    out = []
    with BD._captured_stdout_fd(out), torch.inference_mode():
        graph(x)
    assert "onednn_verbose" not in out[0]


@needs_graph
@needs_openvino
def test_breakdown_groups_both_runtimes_alike():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(), nn.Conv3d(8, 16, 1), nn.ReLU(),
                          nn.Conv3d(16, 16, 3, padding=1, groups=16), nn.ReLU(), nn.Conv3d(16, 8, 1),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    r = BD.breakdown(model, x, rounds=2, calls=1)
    ones, dw = _count_convs(model)
    assert (ones, dw) == (2, 1)
    for side in ("lightvid", "openvino"):
        s = r[side]
        assert s["wall_ms"] > 0 and len(s["round_ms"]) == 2
        assert (s["kernels_n"][BD.CONV_1X1], s["kernels_n"][BD.CONV_DW]) == (ones, dw), side
        assert s["profiled_wall_ms"] > 0
        assert s["unaccounted_ms"] == pytest.approx(s["profiled_wall_ms"] - sum(s["kernels_ms"].values()))
    table = BD.format_breakdown(r)
    assert "| depthwise convolutions |" in table and "| profiled wall minus all kernels |" in table


def test_bench_refuses_to_replace_a_file_it_did_not_write(tmp_path):
    bench = load_benchmark("bench_breakdown")
    user = tmp_path / "results.json"
    user.write_bytes(b'{"mine": 1}')
    with pytest.raises(UserError, match="results.json: exists and is not an earlier bench_breakdown"):
        bench.main(["--models", "x3d_s", "--json", str(user)])
    assert user.read_bytes() == b'{"mine": 1}'
    with pytest.raises(UserError, match="is a folder"):
        bench.main(["--models", "x3d_s", "--json", str(tmp_path)])
    ours = tmp_path / "ours.json"
    ours.write_text(json.dumps({bench.MARKER: 1, "runs": []}))
    bench.check_json_target(str(ours))  # an earlier result of the script may be replaced
