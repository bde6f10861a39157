"""``sweep launch`` predicts each training run's GPU memory before submitting: it warns where a run does not fit
the default GPU and refuses, naming the runs, with ``--gpu-mem-gb``; traces are cached under the sweep's root."""

import pytest

from benchmark.core.errors import ConfigError
from sweeps import memory
from sweeps.launcher import SlurmOptions, launch
from sweeps.memory import usable_bytes
from sweeps.records import read_records
from sweeps.spec import load_spec
from tests.sweeps.helpers import tiny_spec

GPU = SlurmOptions(gpus_per_node=1)


@pytest.fixture()
def spec(tmp_path):
    return load_spec(tiny_spec(tmp_path, methods=("refl", "leapalign"), pretrained=False))


def test_launch_warns_then_refuses_when_a_prediction_does_not_fit(spec, tmp_path, capsys, monkeypatch):
    root = tmp_path / "sweep"
    launch(spec, "slurm", root, GPU, dry_run=True)  # the tiny FLUX fits 80 GB: no warning
    assert "warning" not in capsys.readouterr().err
    plans = root / "memory-plans.json"
    assert plans.is_file()  # refl and leapalign differ in memory: two traces, kept for the next launch

    monkeypatch.setattr(memory, "predict", lambda *a, **k: pytest.fail("a cached setting was traced again"))
    monkeypatch.setattr(memory, "DEFAULT_GPU_GB", 1.001)  # 1 MB left after the CUDA context: nothing fits
    launch(spec, "slurm", root, GPU, dry_run=True)
    err = capsys.readouterr().err
    assert "warning: predicted peak memory above a 1.001 GB GPU" in err and "  refl: " in err and "  leapalign: " in err

    with pytest.raises(ConfigError, match="--gpu-mem-gb.*nothing was submitted") as refused:
        launch(spec, "slurm", root, GPU, gpu_mem_gb=1.001)
    assert "  refl: " in str(refused.value) and read_records(root) == []


def test_gpu_memory_must_exceed_the_context(spec, tmp_path):
    with pytest.raises(ConfigError, match="--gpu-mem-gb"):
        launch(spec, "slurm", tmp_path, GPU, dry_run=True, gpu_mem_gb=0.5)
    assert usable_bytes(80) == int(79 * 2**30 * 0.95)
