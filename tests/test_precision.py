"""One precision policy for bench, optimize, predict and training (lightvid.precision).

The CPU probe is monkeypatched, so the fallback is tested on any CPU, with and without bf16.
"""
import json
from dataclasses import replace

import pytest
import torch

import lightvid
from lightvid import precision as P
from lightvid.errors import UserError

NO_BF16 = P.CpuFeatures(capability="AVX2", avx2=True, avx512=False, avx512_bf16=False, amx_bf16=False,
                        amx_fp16=False, avx512_fp16=False, vnni=False)
WITH_BF16 = replace(NO_BF16, capability="AVX512", avx512=True, avx512_bf16=True, amx_bf16=True, vnni=True)


@pytest.fixture
def cpu(monkeypatch):
    """``cpu(features)`` makes lightvid see a CPU with ``features`` (and no CUDA)."""
    monkeypatch.setattr(P, "_warned", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def use(features: P.CpuFeatures) -> None:
        monkeypatch.setattr(P, "cpu_features", lambda: features)

    return use


def _warning_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]


def test_explicit_bf16_without_native_support_warns_once_and_runs_fp32(cpu, capsys):
    cpu(NO_BF16)
    assert P.resolve_precision("bf16") == "fp32"
    assert P.resolve_precision("bf16-mixed", "cpu", training=True) == "32"
    assert P.resolve_precision("bf16-true", "auto", training=True) == "32"
    assert P.resolve_precision("bf16") == "fp32"  # warned once per message
    lines = _warning_lines(capsys)
    assert len(lines) == 3
    assert "AVX512-BF16 or AMX-BF16" in lines[0] and "it has AVX2" in lines[0] and "running fp32" in lines[0]
    assert "running 32 instead" in lines[1]
    assert P.resolve_precision("bf16", allow_slow=True) == "bf16"
    assert P.resolve_precision("16-mixed", training=True) == "32"  # fp16 on a CPU without AMX-FP16 too
    assert "AMX-FP16" in _warning_lines(capsys)[-1]


def test_auto_and_explicit_choices_agree_in_both_vocabularies(cpu, capsys):
    cpu(NO_BF16)
    assert P.resolve_precision("auto") == "fp32" and P.resolve_precision("auto", training=True) == "32"
    assert P.resolve_precision("fp32") == "fp32" and P.resolve_precision("32") == "32"
    cpu(WITH_BF16)
    assert P.resolve_precision("auto") == "bf16" and P.resolve_precision("auto", training=True) == "bf16-mixed"
    assert P.resolve_precision("bf16") == "bf16" and P.resolve_precision("bf16-mixed") == "bf16-mixed"
    assert not _warning_lines(capsys)
    with pytest.raises(UserError, match="precision must be one of"):
        P.resolve_precision("fp8")
    with pytest.raises(UserError, match="precision must be one of"):
        P.resolve_precision("bf16-mixed", training=False)


def test_cpu_features_of_this_machine_are_consistent():
    f = P.cpu_features()
    assert f.bf16 == (f.avx512_bf16 or f.amx_bf16)
    assert P.has_native_bf16() == f.bf16
    assert isinstance(f.describe(), str) and f.describe()


def test_optimize_falls_back_to_fp32(cpu, capsys):
    cpu(NO_BF16)
    model = lightvid.create_model("c3d", num_classes=4, width_mult=0.0625, fc_width=32).eval()
    opt = lightvid.optimize(model, precision="bf16")
    assert opt.report["precision"] == "fp32" and opt.report["requested_precision"] == "bf16"
    assert next(opt.model.parameters()).dtype == torch.float32
    assert len(_warning_lines(capsys)) == 1
    cpu(WITH_BF16)
    assert next(lightvid.optimize(model, precision="bf16").model.parameters()).dtype == torch.bfloat16


def test_bench_optimize_bf16_warns_and_runs_fp32(cpu, capsys):
    from lightvid.cli import main

    cpu(NO_BF16)
    assert main(["bench", "c3d", "--width-mult", "0.0625", "--input", "3x16x32x32", "--optimize", "--precision",
                 "bf16", "--repeats", "1", "--warmup", "0", "--json"]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out.strip().splitlines()[-1])
    assert r["precision"] == "fp32" and r["optimized"]
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "AVX512-BF16" in warnings[0]
    assert main(["bench", "c3d", "--width-mult", "0.0625", "--input", "3x16x32x32", "--precision", "bf16",
                 "--repeats", "1", "--warmup", "0", "--json"]) == 0  # without --optimize as well
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["precision"] == "fp32"


def test_predict_precision_falls_back(cpu, capsys, tmp_path):
    from lightvid.accel.predict import Predictor
    from lightvid.train.checkpoint import AtomicCheckpointIO
    from lightvid.train.module import ClassificationModule

    m = ClassificationModule("c3d", num_classes=2, classes=["a", "b"], model_kwargs={"width_mult": 0.0625,
                                                                                     "fc_width": 32},
                             config={"data": {"root": "x", "format": "synth", "clip_len": 4, "size": 32,
                                              "short_side": None}})
    ckpt = {"state_dict": m.state_dict(), "epoch": 0, "global_step": 0, "hyper_parameters": dict(m.hparams)}
    m.on_save_checkpoint(ckpt)
    AtomicCheckpointIO().save_checkpoint(ckpt, tmp_path / "best.ckpt")
    cpu(NO_BF16)
    pred = Predictor(str(tmp_path / "best.ckpt"), precision="bf16")
    assert pred.run.report["precision"] == "fp32"
    assert len(_warning_lines(capsys)) == 1
    with pytest.raises(UserError, match="--precision"):
        Predictor(str(tmp_path / "best.ckpt"), precision="int4")


def test_training_bf16_mixed_falls_back_to_32(cpu, capsys, tiny_synth, tmp_path):
    from test_train_run import REPO, tiny_overrides

    from lightvid.train.config import load_config
    from lightvid.train.run import train

    cpu(NO_BF16)
    overrides = [o for o in tiny_overrides(tiny_synth, epochs=1) if not o.startswith("trainer.precision")]
    cfg = load_config(REPO / "configs" / "quickstart.yaml", [*overrides, "trainer.precision=bf16-mixed",
                                                             "trainer.final_eval=false"])
    report = train(cfg, tmp_path / "run")
    assert report["precision"] == "32"
    warnings = _warning_lines(capsys)
    assert len(warnings) == 1 and "precision bf16-mixed" in warnings[0] and "running 32 instead" in warnings[0]
