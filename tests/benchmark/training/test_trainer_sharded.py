"""FSDP2 checkpoints are per-rank DCP shards that resume on another world size: a 2-process run (gloo) stopped after
step 1 and resumed in 1 process, and a 1-process run resumed in 2 processes, both end equal to the uninterrupted
1-process run. Tolerance as for the distributed tests: float32 round-off only, atol 1e-6 / rtol 1e-5 on the
parameters and EMA after 2 AdamW steps."""


import pytest
import torch

from benchmark.core.checkpoint import verify
from benchmark.core.testing import single_thread
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
from tests.benchmark.training.helpers import checkpoint_weights, two_ranks

SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
result = train(tiny_config(sys.argv[1], "flux", "leapalign", sys.argv[3:]), TinyReward(), resume=sys.argv[2])
sys.stdout.write(f"DONE {result.status} {result.step}\\n"); sys.stdout.flush()  # one write: ranks share the pipe
"""

COMMON = ["schedule.global_batch=4", "schedule.micro_batch=1", "checkpoint.every=1", "checkpoint.keep=5",
          "optim.lr=1e-3", "optim.ema_decay=0.5", "distributed.fsdp_param_dtype=float32"]


def two_processes(tmp_path, run, resume, args):
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    tiny_config(run, "flux", "leapalign", args)  # writes the prompt cache once, before both workers read it
    return two_ranks(script, run, resume, *args)


def assert_close(a, b):
    assert a.keys() == b.keys() and len(a) > 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    with single_thread():
        result = train(tiny_config(tmp_path_factory.mktemp("one"), "flux", "leapalign",
                                   COMMON + ["schedule.iterations=2"]), TinyReward())
    return checkpoint_weights(result.checkpoint)


def test_two_processes_write_shards_and_resume_in_one(tmp_path, uninterrupted):
    out = two_processes(tmp_path, tmp_path / "a", "none", COMMON + ["schedule.iterations=1"])
    assert out.count("DONE finished 1") == 2
    ckpt = tmp_path / "a" / "run" / "checkpoints" / "step_000001"
    assert sorted(p.name for p in (ckpt / "dcp").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert verify(ckpt) is None
    with single_thread():
        resumed = train(tiny_config(tmp_path / "a", "flux", "leapalign", COMMON + ["schedule.iterations=2"]),
                        TinyReward(), resume="auto")
    assert resumed.step == 2 and not (resumed.checkpoint / "dcp").exists()  # one process: the full format
    assert_close(checkpoint_weights(resumed.checkpoint), uninterrupted)


def test_one_process_resumes_in_two(tmp_path, uninterrupted):
    with single_thread():
        train(tiny_config(tmp_path / "b", "flux", "leapalign", COMMON + ["schedule.iterations=1",
                                                                        "checkpoint.format=sharded"]), TinyReward())
    out = two_processes(tmp_path, tmp_path / "b", "auto", COMMON + ["schedule.iterations=2"])
    assert out.count("DONE finished 2") == 2
    ckpt = tmp_path / "b" / "run" / "checkpoints" / "step_000002"
    assert sorted(p.name for p in (ckpt / "dcp").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert_close(checkpoint_weights(ckpt), uninterrupted)
