"""The memory tracker counts live storages exactly: known allocations, frees, views, labels and replays."""

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from benchmark.core.memtrace import CudaPolicy, MemoryTracker

MB = 4 * 2**18  # bytes of 2**18 float32 values


def test_peak_counts_live_storages_once_and_frees():
    with FakeTensorMode():
        tracker = MemoryTracker()
        with tracker:
            a = torch.empty(2**18)
            b = a.view(2**9, 2**9)  # a view shares a's storage: no new bytes
            c = torch.empty(2**18)
            del a, b
            d = torch.empty(2 * 2**18)  # a's storage is gone: live c + d
        assert tracker.peak.total == 3 * MB and tracker.total == 3 * MB
        del c, d
        assert tracker.total == 0 and tracker.peak.total == 3 * MB


def test_labels_reach_the_peak_and_a_replay_adds_its_transient():
    with FakeTensorMode():
        tracker = MemoryTracker()
        w = torch.empty(2**18)
        tracker.add([w], "parameters")
        with tracker:
            with tracker.window() as window:
                t = torch.empty(2 * 2**18)
                del t
            tracker.replay(window["extra"])
            kept = torch.empty(2**18)
            tracker.label([kept], "trajectory")
        assert window["transient"] == 2 * MB and window["extra"] == {"activations": 2 * MB}
        assert tracker.peak.total == 3 * MB and tracker.split() == {"parameters": MB, "activations": 2 * MB}
        tracker.reset_peak()
        assert tracker.split() == {"parameters": MB, "trajectory": MB}


def test_flash_attention_keeps_no_attention_weights():
    """Under the CUDA policy attention stores the output and a log-sum-exp per row, never the L x L weights."""
    q = torch.empty(1, 2, 256, 64)
    with FakeTensorMode(allow_non_fake_inputs=True):
        tracker = MemoryTracker()
        with tracker, CudaPolicy(autocast=False):
            out = F.scaled_dot_product_attention(q, q, q)
        assert tracker.peak.total == out.numel() * 4 + 2 * 256 * 4  # output + logsumexp (float32)
