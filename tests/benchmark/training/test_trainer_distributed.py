"""Two CPU processes on gloo (DDP for LoRA, FSDP2 for full fine-tuning) end with the same parameters as one
process with the same global batch. Tolerance: float32 round-off only (the gradient all-reduce and the
reduce-scatter sum in a different order): atol 1e-6, rtol 1e-5 on parameters after 2 AdamW steps."""


import pytest
import torch

from benchmark.core.backbones.tiny import tiny_flux
from benchmark.core.distributed import env_from_environment, first_host
from benchmark.core.testing import single_thread
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
from tests.benchmark.training.helpers import checkpoint_weights, two_ranks

SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from benchmark.training.testing import TinyReward, tiny_config
from benchmark.training.trainer import train
result = train(tiny_config(sys.argv[1], "flux", "leapalign", sys.argv[2:]), TinyReward())
sys.stdout.write(f"DONE {result.status} {result.step}\\n"); sys.stdout.flush()  # one write: ranks share the pipe
"""

CASES = {
    "ddp_lora": ["train.lora.rank=4", "train.lora.alpha=8", "distributed.strategy=ddp"],
    "fsdp_full": ["distributed.strategy=fsdp", "distributed.fsdp_param_dtype=float32"],
}
COMMON = ["schedule.iterations=2", "schedule.global_batch=4", "schedule.micro_batch=1", "checkpoint.every=0",
          "optim.lr=1e-3", "optim.ema_decay=0.5"]


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_match_one(tmp_path, case):
    args = COMMON + CASES[case]
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    tiny_config(tmp_path / "two", "flux", "leapalign", args)  # writes the prompt cache once, before both workers read it
    assert two_ranks(script, tmp_path / "two", *args).count("DONE finished 2") == 2
    with single_thread():
        one = train(tiny_config(tmp_path / "one", "flux", "leapalign", args), TinyReward())
    a, b = checkpoint_weights(tmp_path / "two" / "run" / "checkpoints" / "step_000002"), checkpoint_weights(one.checkpoint)
    assert a.keys() == b.keys() and len(a) > 4
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    # the run did train (the comparison is not between two untouched models)
    if case == "ddp_lora":  # peft's gaussian init starts lora_B at zero
        assert any(v.abs().max() > 0 for k, v in b.items() if "lora_B" in k and not k.startswith("ema."))
    else:
        initial = tiny_flux(height=32, width=32).transformer.state_dict()
        assert sum(not torch.equal(initial[k], b[k]) for k in initial) > len(initial) // 2


def test_rank_environment():
    assert env_from_environment({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1",
                                 "MASTER_PORT": "1234"}).__dict__ == dict(rank=3, world_size=8, local_rank=1,
                                                                          master_addr="n1", master_port=1234)
    slurm = env_from_environment({"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "5",
                                  "SLURM_JOB_NODELIST": "gpu[03-04]", "SLURM_JOB_ID": "4242"})
    assert (slurm.rank, slurm.world_size, slurm.local_rank, slurm.master_addr) == (5, 16, 5, "gpu03")
    assert first_host("node7,node8") == "node7" and env_from_environment({}).world_size == 1
