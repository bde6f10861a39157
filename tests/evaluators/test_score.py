"""Sharding the scoring over ranks keeps the one-task batches."""

from pathlib import Path

from evaluators.score import Sample, shard


def test_shards_are_whole_one_task_batches_dealt_round_robin():
    samples = [Sample(i // 4, {"prompt": "p"}, i % 4, Path(f"{i}.png")) for i in range(20)]
    ranks = [shard(samples, 8, r, 2) for r in range(2)]
    assert ranks[0] == samples[:8] + samples[16:] and ranks[1] == samples[8:16]
    assert shard(samples, 8, 0, 1) == samples
    three = [shard(samples, 3, r, 3) for r in range(3)]
    assert sorted(s.path.name for r in three for s in r) == sorted(s.path.name for s in samples)
    batches = [samples[i : i + 3] for i in range(0, 20, 3)]  # one task's batches, each on one rank, whole
    assert all(any(b == r[j : j + len(b)] for r in three for j in range(len(r))) for b in batches)
