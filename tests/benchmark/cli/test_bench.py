"""The benchmarks run and report what they promise; speed is never asserted here (memory growth is)."""

import json
from collections import Counter

import pytest
import torch
from diffusers import FluxTransformer2DModel
from peft import LoraConfig

from benchmark.cli import main
from benchmark.cli.bench import step
from benchmark.cli.bench.harness import BenchSetup
from benchmark.core.backbones.tiny import TINY_FLUX


def json_rows(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_bench_memory_full_backprop_grows_and_leapalign_does_not(capsys):
    assert main(["bench", "memory", "--json", "--resolution", "96", "--steps", "2", "12",
                 "--methods", "leapalign", "full_backprop"]) == 0
    rows = json_rows(capsys)
    cases = {(r["method"], r["steps"]): r for r in rows if "peak_bytes" in r}
    assert set(cases) == {("leapalign", 2), ("leapalign", 12), ("full_backprop", 2), ("full_backprop", 12)}
    ratios = {r["method"]: r for r in rows if "peak_ratio" in r}
    # full backprop keeps 12 evaluations instead of 2: its step's memory must grow a lot
    assert cases[("full_backprop", 12)]["step_bytes"] > cases[("full_backprop", 2)]["step_bytes"] + 20e6
    assert ratios["leapalign"]["peak_ratio"] <= 1.05


def test_bench_step_reports_floor_and_split(capsys):
    assert main(["bench", "step", "--json", "--resolution", "32", "--steps", "6", "--rounds", "3", "--ops",
                 "--methods", "leapalign", "draft_lv"]) == 0
    rows = {r["method"]: r for r in json_rows(capsys)}
    assert (rows["leapalign"]["n_v_grad"], rows["leapalign"]["n_v_nograd"]) == (2, 4)
    assert (rows["draft_lv"]["n_v_grad"], rows["draft_lv"]["n_decode"]) == (3, 3)
    for row in rows.values():
        assert row["ratio"] == pytest.approx(row["measured_s"] / row["floor_s"], rel=1e-12)
        assert row["round_ratio_q1"] <= row["round_ratio_median"] <= row["round_ratio_q3"] and row["rounds"] == 3
        assert row["n_reward"] == row["n_decode"]  # every decoded image is scored
        assert row["ops_beyond"] == row["ops_step"] - row["ops_floor"] and row["ops_floor"] > 1000


def test_bench_step_floor_runs_each_part_as_often_as_the_step(monkeypatch):
    ran = Counter()
    names = ("v_nograd", "v_grad", "decode", "reward", "decode_nograd", "reward_nograd")
    monkeypatch.setattr(step, "parts", lambda setup: {k: lambda k=k: ran.update([k]) for k in names})
    setup = BenchSetup.build(resolution=32)
    calls = {"v_nograd": 4, "v_grad": 2, "decode": 3, "reward": 3, "decode_nograd": 1, "reward_nograd": 2}
    before = [p.detach().clone() for p in setup.backbone.transformer.parameters()]
    for p in setup.backbone.transformer.parameters():
        p.grad = torch.ones_like(p)
    adam = setup.optimizer.step
    monkeypatch.setattr(setup.optimizer, "step", lambda: ran.update(["adamw"]) or adam())
    step.floor_of(setup, calls, updates=3)()
    assert ran == {**calls, "adamw": 3}  # and then the step's AdamW steps, leaving no gradient behind, as it does
    assert all(p.grad is None for p in setup.backbone.transformer.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, setup.backbone.transformer.parameters()))


def test_bench_step_and_memory_of_a_grpo_preset(capsys):
    """DanceGRPO's step on one group of 12 at micro-batch 1: 12 rollouts without gradient, 12 scores without
    gradient, int(0.6 * 3) = 1 trained step per sample, 3 optimiser steps; its cost is per sample drawn."""
    assert main(["bench", "step", "--json", "--resolution", "32", "--steps", "4", "--rounds", "1",
                 "--methods", "dancegrpo", "leapalign"]) == 0
    rows = {r["method"]: r for r in json_rows(capsys)}
    dance = rows["dancegrpo"]
    assert (dance["samples"], dance["updates"], dance["n_v_grad"], dance["n_v_nograd"]) == (12, 3, 12, 48)
    assert (dance["n_decode_nograd"], dance["n_reward_nograd"], dance["n_decode"], dance["n_reward"]) == (12, 12, 0, 0)
    assert dance["s_per_sample"] == pytest.approx(dance["measured_s"] / 12) and rows["leapalign"]["samples"] == 1
    assert main(["bench", "memory", "--json", "--resolution", "32", "--steps", "4", "8", "--methods", "dancegrpo"]) == 0
    cases = {r["steps"]: r for r in json_rows(capsys) if "peak_bytes" in r}
    assert set(cases) == {4, 8} and cases[8]["samples"] == 12


def test_bench_rollout_matches_diffusers(capsys):
    assert main(["bench", "rollout", "--json", "--resolution", "32", "--steps", "4", "--repeats", "1"]) == 0
    (row,) = json_rows(capsys)
    assert row["max_rel_diff"] < 1e-5 and (row["steps"], row["resolution"]) == (4, 32)


def test_bench_real_runs_on_a_tiny_config(capsys):
    """The real-size script on the tiny FLUX; with --predict the planned step share beside the measured one (on
    CPU the allocator's profile; on a GPU max_memory_allocated): within 10%."""
    assert main(["bench", "real", "--tiny", "--json", "--device", "cpu", "--resolutions", "32", "--steps", "4",
                 "--predict"]) == 0
    rows = {r["mode"]: r for r in json_rows(capsys)}
    assert all(abs(r["prediction_error"]) <= 0.10 and r["step_bytes"] > 2**20 for r in rows.values()), rows
    assert set(rows) == {"lora", "full"}
    tiny = FluxTransformer2DModel(**TINY_FLUX)
    assert rows["full"]["trained_params"] == sum(p.numel() for p in tiny.parameters())
    tiny.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    assert rows["lora"]["trained_params"] == sum(p.numel() for n, p in tiny.named_parameters() if "lora_" in n)
    # 32 px through the tiny VAE (2 levels: 16 x 16 latents) packs into 8 x 8 tokens; no CUDA, no peak memory
    assert all(r["image_tokens"] == 64 and r["peak_bytes"] is None and "error" not in r for r in rows.values())


def test_bench_save_runs_every_case(capsys):
    assert main(["bench", "save", "--tiny", "--json"]) == 0
    rows = json_rows(capsys)
    saves = {(r["world_size"], r["format"]): r for r in rows if "held_bytes" in r}
    assert set(saves) == {(1, "sharded"), (2, "sharded"), (2, "full")}
    assert len({r["params"] for r in saves.values()}) == 1 and saves[(1, "sharded")]["held_vs_w1_sharded"] == 1
    (exported,) = [r for r in rows if "export_own_bytes" in r]
    assert exported["model_bytes"] == 4 * saves[(1, "sharded")]["params"]


DIRECT = ["leapalign", "refl", "draft_lv", "drtune", "full_backprop", "full_backprop_ckpt"]


@pytest.mark.parametrize("methods, resolution", [(DIRECT, 64), (["dancegrpo", "mixgrpo", "flowgrpo"], 32)],
                         ids=["direct-gradient", "grpo-presets"])
def test_bench_memory_prediction_matches_the_measured_step(capsys, methods, resolution):
    """The traced prediction of the tiny FLUX's step (float32, CPU) against the step's share of the CPU allocator
    measured in the same run, for every method at T = 10 and 50: within 10% (measured on 3 Dec 2026: at most
    4.9% at 64 px; the GRPO presets at 32 px, where their steps are large, at most 0.5%). At 32 px a
    direct-gradient step is 2-3 MB and a fixed 0.2 MB the trace does not see (allocations outside torch's
    dispatched operators, not identified further) is 6-21% of it. RSS is larger still by autograd's graph
    (host memory, not on a GPU): reported, not checked."""
    assert main(["bench", "memory", "--json", "--resolution", str(resolution), "--steps", "10", "50", "--predict",
                 "--methods", *methods]) == 0
    cases = [r for r in json_rows(capsys) if "peak_bytes" in r]
    assert sorted((r["method"], r["steps"]) for r in cases) == sorted((m, T) for m in methods for T in (10, 50))
    for case in cases:
        assert abs(case["prediction_error"]) <= 0.10, case
        assert case["step_bytes"] >= case["allocated_step_bytes"] > 0  # RSS holds the tensors and more
