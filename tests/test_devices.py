"""The device a run trains on (utils.training.devices), the number format "auto" picks on a GPU
(utils.training.mixed_precision.for_gpu), and the runner's GPU check: a gpu profile without a GPU stops before any
notebook with one sentence, `--allow-cpu` runs it anyway, and run.json and the report name the device."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from utils import models, runner
from utils.report import verdict
from utils.training import devices, mixed_precision

T4 = devices.Gpu("Tesla T4", 15.0, (7, 5))
V100 = devices.Gpu("Tesla V100-SXM2-16GB", 16.0, (7, 0))
P100 = devices.Gpu("Tesla P100-PCIE-16GB", 16.0, (6, 0))
A100 = devices.Gpu("NVIDIA A100-SXM4-40GB", 40.0, (8, 0))
L4 = devices.Gpu("NVIDIA L4", 22.5, (8, 9))
H100 = devices.Gpu("NVIDIA H100 80GB HBM3", 79.6, (9, 0))


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((6, 0), "float32"),  # P100: no tensor cores.
        ((6, 1), "float32"),
        ((7, 0), "mixed_float16"),  # V100
        ((7, 5), "mixed_float16"),  # T4
        ((8, 0), "mixed_bfloat16"),  # A100
        ((8, 9), "mixed_bfloat16"),  # L4
        ((9, 0), "mixed_bfloat16"),  # H100
        ((10, 0), "mixed_bfloat16"),
        (None, "float32"),  # A GPU whose capability the backend did not report.
    ],
)
def test_auto_precision_follows_the_gpus_compute_capability(capability, expected):
    assert mixed_precision.for_gpu(capability) == expected


def test_auto_on_gpus_takes_the_least_capable_and_ignores_the_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t\t: avx512f avx512_bf16\n")
    assert mixed_precision.resolve("auto", cpuinfo, gpus=[T4]) == "mixed_float16"
    assert mixed_precision.resolve("auto", cpuinfo, gpus=[P100]) == "float32"
    assert mixed_precision.resolve("auto", cpuinfo, gpus=[A100, H100]) == "mixed_bfloat16"
    # A mixed node trains every replica in the same format: the one the oldest GPU computes fast.
    assert mixed_precision.resolve("auto", cpuinfo, gpus=[H100, V100]) == "mixed_float16"
    assert mixed_precision.resolve("auto", cpuinfo, gpus=[H100, devices.Gpu("unknown")]) == "float32"
    # An explicit choice is kept on any GPU.
    assert mixed_precision.resolve("float32", cpuinfo, gpus=[H100]) == "float32"


def test_float16_training_keeps_float32_probabilities_and_scales_the_loss(fresh_keras_session):
    """What the gpu profile gets on a T4 or V100: float16 layers, float32 softmax, Keras' loss scaling, finite loss."""
    with mixed_precision.policy("mixed_float16") as resolved:
        model = models.build_model(models.model_spec(kind="resnet", widths=(8, 16), blocks=(1, 1), input_norm="per_channel"), seed=0)
    assert resolved == "mixed_float16"
    layers = {layer.name: layer for layer in model.layers}
    assert layers["stem_conv"].compute_dtype == "float16" and layers["stem_conv"].variable_dtype == "float32"
    assert layers["predictions"].compute_dtype == "float32"
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    images = np.random.default_rng(0).integers(0, 256, (8, 96, 96, 3)).astype("float32")
    loss = model.train_on_batch(images, np.arange(8) % 8)
    assert np.isfinite(loss)
    assert keras.backend.standardize_dtype(model(images[:2]).dtype) == "float32"


def test_nvidia_smi_rows_and_backend_capabilities_are_read():
    gpus = devices.parse_nvidia_smi("Tesla T4, 15360, 7.5\nNVIDIA H100 80GB HBM3, 81559, 9.0\n\n")
    assert gpus == [devices.Gpu("Tesla T4", 15.0, (7, 5)), devices.Gpu("NVIDIA H100 80GB HBM3", 81559 / 1024, (9, 0))]
    assert devices.parse_nvidia_smi("Tesla K80, [N/A], [N/A]") == [devices.Gpu("Tesla K80", None, None)]
    assert devices.parse_capability("8.6") == (8, 6) and devices.parse_capability((7, 5)) == (7, 5)
    assert devices.parse_capability(None) is None and devices.parse_capability("n/a") is None


def test_the_summary_names_model_memory_count_and_backend():
    build = {"backend": "tensorflow", "version": "2.20.0", "cuda": "12.5.1", "cudnn": "9"}
    two = {"gpus": [vars(A100) | {}, vars(A100) | {}], "build": build, "cpu": "AMD EPYC, 2 cores"}
    assert devices.summary(two) == "2 × NVIDIA A100-SXM4-40GB (40 GiB, compute capability 8.0), TensorFlow 2.20.0"
    assert devices.summary({"gpus": [], "build": build, "cpu": "AMD EPYC, 2 cores"}) == "CPU: AMD EPYC, 2 cores, TensorFlow 2.20.0"


def test_this_machine_is_described_as_run_json_records_it():
    device = devices.describe("tensorflow")
    assert device["kind"] in ("cpu", "gpu") and device["build"]["backend"] == "tensorflow"
    assert device["summary"] == devices.summary(device)
    assert json.loads(json.dumps(device)) == device  # Plain JSON, for run.json.
    if device["kind"] == "cpu":
        assert device["summary"].startswith("CPU: " + devices.cpu_model())


@pytest.mark.parametrize(
    "build, driver_gpus, expected",
    [
        (
            {"backend": "tensorflow", "version": "2.21.0", "cuda": "12.5.1", "cudnn": "9"},
            [],
            "TensorFlow 2.21.0 (built for CUDA 12.5.1 and cuDNN 9) sees none: the likely causes are a runtime without a GPU",
        ),
        ({"backend": "tensorflow", "version": "2.21.0", "cuda": None, "cudnn": None}, [], "TensorFlow 2.21.0 (built without CUDA)"),
        (
            {"backend": "tensorflow", "version": "2.21.0", "cuda": "12.5.1", "cudnn": "9"},
            [{"name": "Tesla T4", "memory_gib": 15.0, "compute_capability": [7, 5]}],
            "the driver lists Tesla T4 (15 GiB, compute capability 7.5), so this TensorFlow 2.21.0 does not match the runtime's CUDA",
        ),
        ({"backend": "torch", "version": "2.13.0+cpu", "cuda": None, "cudnn": None}, [], "PyTorch 2.13.0+cpu (built without CUDA)"),
    ],
)
def test_the_no_gpu_sentence_names_the_cause_and_the_build(build, driver_gpus, expected):
    sentence = devices.no_gpu_sentence({"kind": "cpu", "gpus": [], "build": build, "driver_gpus": driver_gpus}, "gpu")
    assert sentence.startswith("the gpu profile needs a GPU, but ") and expected in sentence
    assert sentence.endswith("add --allow-cpu to run it on the CPU anyway.")
    assert sentence.count(". ") == 0 and "\n" not in sentence  # One sentence.


def _no_gpu(monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda backend=None: [])
    monkeypatch.setattr(devices, "nvidia_smi_gpus", lambda: [])


def test_the_gpu_profile_without_a_gpu_stops_before_any_notebook(tmp_path, capsys, monkeypatch):
    _no_gpu(monkeypatch)
    out_dir = tmp_path / "run"
    assert runner.main(["--profile", "gpu", "--out", str(out_dir)]) == 2
    error = capsys.readouterr().err
    lines = error.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the gpu profile needs a GPU") and "Traceback" not in error
    assert "--allow-cpu" in lines[0] and not out_dir.exists()


def test_the_gpu_check_runs_for_real_and_allow_cpu_records_the_cpu(tmp_path, valid_npz, capsys):
    """No fakes: on this machine's backend, the gpu profile either sees a GPU or stops; --allow-cpu creates the run."""
    arguments = ["--profile", "gpu", "--data", str(valid_npz), "--only", "01"]
    if devices.visible_gpus("tensorflow"):
        pytest.skip("a GPU is visible here: the stop is tested with a faked device above")
    assert runner.main([*arguments, "--out", str(tmp_path / "stopped")]) == 2
    assert "needs a GPU" in capsys.readouterr().err and not (tmp_path / "stopped").exists()
    run, notebooks = runner.prepare(
        runner.parse_arguments([*arguments, "--out", str(tmp_path / "run"), "--allow-cpu"]), log=lambda *a, **k: None
    )
    state = json.loads(run.paths.run_json.read_text())
    assert state["device"]["kind"] == "cpu" and state["device"]["summary"].startswith("CPU: ")
    assert state["needs_gpu"] is True and state["allow_cpu"] is True and [nb.stem for nb in notebooks] == ["01_eda_outliers"]


def test_a_visible_gpu_is_recorded_and_named_in_the_verdict(tmp_path, valid_npz, monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda backend=None: [A100])
    arguments = runner.parse_arguments(["--profile", "gpu", "--data", str(valid_npz), "--out", str(tmp_path / "run")])
    run, _ = runner.prepare(arguments, log=lambda *a, **k: None)
    state = json.loads(run.paths.run_json.read_text())
    assert state["device"]["kind"] == "gpu" and state["device"]["gpus"][0]["name"] == A100.name
    assert state["device"]["summary"].startswith("1 × NVIDIA A100-SXM4-40GB (40 GiB, compute capability 8.0), TensorFlow ")
    rows = dict(verdict.verdict_rows(run.paths.root, state))
    assert rows["device"] == state["device"]["summary"]
    # 05's model records the number format it trained in; the verdict says it beside the device.
    (run.paths.models_dir).mkdir(parents=True, exist_ok=True)
    (run.paths.models_dir / "05_finetune_tta_final.json").write_text(json.dumps({"training_precision": "mixed_bfloat16"}))
    assert dict(verdict.verdict_rows(run.paths.root, state))["device"].endswith("; 05 trained in mixed_bfloat16")


def test_resume_rechecks_the_gpu_and_keeps_the_earlier_device(tmp_path, valid_npz, monkeypatch, capsys):
    monkeypatch.setattr(devices, "visible_gpus", lambda backend=None: [T4])
    out_dir = tmp_path / "run"
    run, _ = runner.prepare(
        runner.parse_arguments(["--profile", "gpu", "--data", str(valid_npz), "--out", str(out_dir)]), log=lambda *a, **k: None
    )
    run.mark("interrupted", "preempted")
    # A requeued job on a node whose GPU is not visible stops, and the folder is left as it was.
    _no_gpu(monkeypatch)
    assert runner.main(["--resume", str(out_dir)]) == 2
    assert "needs a GPU" in capsys.readouterr().err
    assert json.loads(run.paths.run_json.read_text())["device"]["gpus"][0]["name"] == "Tesla T4"
    # On another GPU it continues, and run.json keeps both.
    monkeypatch.setattr(devices, "visible_gpus", lambda backend=None: [L4])
    resumed, _ = runner.prepare(runner.parse_arguments(["--resume", str(out_dir)]), log=lambda *a, **k: None)
    assert resumed.state["device"]["gpus"][0]["name"] == "NVIDIA L4"
    assert [item["gpus"][0]["name"] for item in resumed.state["earlier_devices"]] == ["Tesla T4"]
    assert "resumed from 1 × Tesla T4" in verdict.device_description(out_dir, resumed.state)


def test_other_profiles_run_anywhere_and_record_their_device(tmp_path, monkeypatch):
    _no_gpu(monkeypatch)
    run, _ = runner.prepare(
        runner.parse_arguments(["--profile", "smoke", "--out", str(tmp_path / "run"), "--only", "01"]), log=lambda *a, **k: None
    )
    assert run.state["needs_gpu"] is False and run.state["device"]["kind"] == "cpu"
    assert "(the" not in verdict.device_description(run.paths.root, run.state)
