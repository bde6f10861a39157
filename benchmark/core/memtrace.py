"""Peak memory of a computation run on tensors without data (the meta device, or FakeTensorMode's fake CPU tensors).

``MemoryTracker`` is a TorchDispatchMode that sees every tensor an operator returns, keeps the byte size of
every live storage (a weak reference tells it when one is freed; storages FSDP2 resizes in place are
followed through ``UntypedStorage.resize_``) and records the set of live storages whenever their total
reaches a new peak. Each storage carries a category: the phase it was allocated in, or what it turned out to
be (a parameter, an optimiser moment, a gradient, ...) once the caller says so (``label``), which also
re-labels it in the peak's record, so the split of the peak reflects everything known at the end.

torch ships such trackers (``torch.distributed._tools.MemTracker`` and ``FSDPMemTracker``); this one follows the
same storage accounting but fits a training step of ours: MemTracker hooks a gradient on every parameter
(frozen ones, such as the VAE's, raise), refuses a module called twice at top level (the rollout calls the
transformer T times) and scans every module on each operator, which on FLUX's thousand modules makes a
trace of one step take hours; FSDPMemTracker tracks only the FSDP module. What the trackers leave out, this
one does too: memory an operator allocates inside its kernel (workspaces), and the allocator's rounding and
fragmentation.

``CudaPolicy`` is a TorchFunctionMode for the dtype and attention decisions a CUDA run makes that a trace on
CPU tensors would not: ``scaled_dot_product_attention`` as flash attention (output and log-sum-exp saved,
never the L x L weights), and, beside CPU autocast, the casts in CUDA's autocast lists that CPU's lack
(``aten/src/ATen/autocast_mode.h`` in torch 2.14: normalisations, softmax, exp/log/pow, upsampling and
losses in fp32).
"""

from __future__ import annotations

import contextlib
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._guards import active_fake_mode
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ACTIVATIONS = "activations"


@dataclass
class Peak:
    """The largest total of live bytes, and the live storages (serial -> bytes) at that moment."""

    total: int = 0
    live: dict[int, int] = field(default_factory=dict)
    extra: Counter = field(default_factory=Counter)  # replayed transients (``MemoryTracker.replay``), by category


class MemoryTracker(TorchDispatchMode):
    """Live bytes of every storage created under it (or ``add``-ed), their peak and its split by category."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes: dict[int, int] = {}  # serial -> bytes, live storages only
        self.labels: dict[int, str] = {}  # serial -> category (kept after a storage dies: the peak may hold it)
        self.serials: dict[int, int] = {}  # id(storage) -> serial, live storages only
        self.total = 0
        self.peak = Peak()
        self.phase = ACTIVATIONS
        self._next = 0
        self._fake_mode = None
        self._resize = None
        self._muted = 0
        self._propagation_lock = None

    # -- accounting ---------------------------------------------------------------------------------------------

    def _serial(self, st: torch.UntypedStorage) -> int | None:
        return self.serials.get(id(st))

    def _track(self, t: Tensor, category: str) -> int:
        st = t.untyped_storage()
        serial = self._serial(st)
        if serial is None:
            serial = self._next = self._next + 1
            self.serials[id(st)] = serial
            self.bytes[serial] = st.nbytes()
            self.labels[serial] = category
            self.total += st.nbytes()
            weakref.finalize(st, self._free, id(st), serial)
            self._update_peak()
        return serial

    def _free(self, key: int, serial: int) -> None:
        self.serials.pop(key, None)
        self.total -= self.bytes.pop(serial, 0)

    def _resized(self, st: torch.UntypedStorage) -> None:
        serial = self._serial(st)
        if serial is not None:
            self.total += st.nbytes() - self.bytes[serial]
            self.bytes[serial] = st.nbytes()
            self._update_peak()

    def _update_peak(self, extra: Counter | None = None) -> None:
        total = self.total + sum((extra or {}).values())
        if total > self.peak.total:
            self.peak = Peak(total, dict(self.bytes), Counter(extra or {}))

    def add(self, tensors: Iterable[Tensor], category: str) -> None:
        """Track existing tensors (parameters, optimiser state, ...) under ``category``."""
        self.label(tensors, category)

    def label(self, tensors: Iterable[Tensor], category: str) -> None:
        """Put the storages of ``tensors`` (tracked or not yet) in ``category``, also in the peak's record."""
        for t in tensors:
            if t is not None:
                self.labels[self._track(local(t), category)] = category

    @contextlib.contextmanager
    def in_phase(self, category: str) -> Iterator[None]:
        """Allocations inside the block are labelled ``category`` (unless labelled otherwise later)."""
        before, self.phase = self.phase, category
        try:
            yield
        finally:
            self.phase = before

    def reset_peak(self) -> None:
        """Forget the peak so far: the next one is measured from what is live now."""
        self.peak = Peak(self.total, dict(self.bytes))

    def split(self) -> dict[str, int]:
        """Bytes per category at the peak."""
        out = Counter(self.peak.extra)
        for serial, nbytes in self.peak.live.items():
            out[self.labels.get(serial, ACTIVATIONS)] += nbytes
        return dict(out)

    def by_category(self) -> Counter:
        """Bytes per category now."""
        out = Counter()
        for serial, nbytes in self.bytes.items():
            out[self.labels[serial]] += nbytes
        return out

    # -- transients that repeat ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def window(self) -> Iterator[dict]:
        """Measure a block's transient: ``{"extra": Counter}``, its peak above the memory it started from, by
        category, for ``replay``. (The block must not free what existed before it.)"""
        outer, start_total, start = self.peak, self.total, self.by_category()
        self.peak = Peak(self.total, dict(self.bytes))
        result: dict = {}
        try:
            yield result
        finally:
            inner = self.peak
            at_peak = Counter(inner.extra)
            for serial, nbytes in inner.live.items():
                at_peak[self.labels.get(serial, ACTIVATIONS)] += nbytes
            result["extra"] = Counter({k: v for k, v in (at_peak - start).items() if v > 0})
            result["transient"] = inner.total - start_total
            self.peak = outer if outer.total >= inner.total else inner

    def replay(self, extra: Counter) -> None:
        """The peak of a repeat of a measured block, which starts from the memory live now."""
        self._update_peak(extra)

    # -- the dispatch mode ------------------------------------------------------------------------------------

    def __enter__(self):
        from torch.distributed.tensor._sharding_prop import ShardingPropagator  # DTensor's metadata propagation

        # DTensor computes an operator's output metadata by running it on fake tensors of the global shapes, in
        # the active fake mode when there is one (ours): those tensors are no memory of the rank. They are made
        # under ShardingPropagator._fake_mode_lock, which is swapped for a context that mutes the tracker.
        self._propagation_lock = ShardingPropagator._fake_mode_lock
        ShardingPropagator._fake_mode_lock = Muted(self)
        self._fake_mode = active_fake_mode()
        self._resize = torch.UntypedStorage.resize_
        original, tracker = self._resize, self

        @wraps(original)
        def resize_(st, size):
            out = original(st, size)
            tracker._resized(st)
            return out

        torch.UntypedStorage.resize_ = resize_
        return super().__enter__()

    def __exit__(self, *exc):
        from torch.distributed.tensor._sharding_prop import ShardingPropagator  # see __enter__

        ShardingPropagator._fake_mode_lock = self._propagation_lock
        torch.UntypedStorage.resize_ = self._resize
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        from torch.distributed.tensor import DTensor  # DTensor itself runs its local operators through this mode

        if any(t is DTensor for t in types):
            return NotImplemented
        if func is torch.ops.aten._local_scalar_dense.default:  # .item() / bool(): values are unknown here
            return 1.0 if args[0].dtype.is_floating_point else 1
        if func is torch.ops._c10d_functional.wait_tensor.default and self._fake_mode is not None:
            return args[0]  # the fake implementation returns a new tensor where the real one waits in place
        out = func(*args, **(kwargs or {}))
        if not self._muted and active_fake_mode() is self._fake_mode:  # not DTensor's own fake tensors
            for t in tree_flatten(out)[0]:
                if isinstance(t, Tensor):
                    self._track(t, self.phase)
        return out


class Muted:
    """A reusable context in which ``tracker`` counts nothing."""

    def __init__(self, tracker: MemoryTracker):
        self.tracker = tracker

    def __enter__(self):
        self.tracker._muted += 1

    def __exit__(self, *exc):
        self.tracker._muted -= 1


def local(t: Tensor | None) -> Tensor | None:
    """A DTensor's local shard, or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


# -- what a CUDA run would decide -----------------------------------------------------------------------------

# bf16 autocast's operator lists differ by device (aten/src/ATen/autocast_mode.h and autocast_mode.cpp, torch 2.14):
# the trace runs CPU autocast on fake CPU tensors and adds what CUDA's lists have beyond CPU's, by the names the
# Python API reaches them under. CUDA_FP32: AT_FORALL_FP32 and AT_FORALL_FP32_SET_OPT_DTYPE (the latter only
# without a dtype argument); CUDA_LOWER: AT_FORALL_LOWER_PRECISION_FP entries CPU's list lacks.
CUDA_FP32 = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt", "sinh",
    "tan", "pow", "__pow__", "__rpow__", "softplus", "layer_norm", "rms_norm", "group_norm", "cosine_similarity",
    "poisson_nll_loss", "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss", "kl_div", "l1_loss",
    "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss",
    "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits", "dist", "pdist", "cdist", "renorm",
    "logsumexp", "interpolate", "upsample",
})
CUDA_FP32_UNLESS_DTYPE = frozenset({"prod", "softmax", "log_softmax", "cumprod", "cumsum", "sum", "norm",
                                    "vector_norm", "matrix_norm"})
CUDA_LOWER = frozenset({"addmv", "addr", "einsum", "mv", "chain_matmul", "multi_dot"})


class CudaPolicy(TorchFunctionMode):
    """What a CUDA run decides and a CPU trace would not: ``scaled_dot_product_attention`` as flash attention
    and, with ``autocast`` (inside ``torch.autocast("cpu", dtype=torch.bfloat16)``, which casts the common
    lower-precision operators and keeps autocast's weight cache), CUDA's own casts: normalisations, softmax,
    exp/log/pow, upsampling, reductions and losses in fp32, einsum and the like in bf16.

    These operators are leaves (their bodies call no other Python API), so casting at the call is casting
    the operator. Activation checkpointing recomputes forward in backward, where function modes are not
    active: run checkpointed functions through ``under_policy``.
    """

    def __init__(self, autocast: bool):
        super().__init__()
        self.autocast = autocast

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self.autocast:
            if name in CUDA_LOWER:
                args, kwargs = cast((args, kwargs), torch.bfloat16)
            elif name in CUDA_FP32 or (name in CUDA_FP32_UNLESS_DTYPE and kwargs.get("dtype") is None):
                args, kwargs = cast((args, kwargs), torch.float32)
        if func is F.scaled_dot_product_attention:
            return flash_attention(func, args, kwargs)
        return func(*args, **kwargs)


def cast(tree, dtype: torch.dtype):
    """Every bf16/fp16/fp32 tensor in ``tree`` in ``dtype`` (autocast leaves fp64 and non-float tensors alone)."""
    leaves, spec = tree_flatten(tree)
    return spec.unflatten([x.to(dtype) if isinstance(x, Tensor) and x.is_floating_point() and x.dtype != torch.float64
                           else x for x in leaves])


def under_policy(fn, autocast: bool):
    """``fn`` under a ``CudaPolicy`` when none is active (a recomputation in backward; torch.utils.checkpoint
    restores the autocast state itself)."""

    @wraps(fn)
    def run(*args, **kwargs):
        if any(isinstance(m, CudaPolicy) for m in _get_current_function_mode_stack()):
            return fn(*args, **kwargs)
        with CudaPolicy(autocast):
            return fn(*args, **kwargs)

    return run


SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def flash_attention(func, args, kwargs) -> Tensor:
    """``scaled_dot_product_attention`` as the flash kernel (CUDA's pick for these inputs; on CPU the same
    outputs: the result and the log-sum-exp per row). With a mask the call is left as it is."""
    a = {**dict(zip(SDPA_ARGS, args)), **kwargs}
    if a.get("attn_mask") is not None or a.get("enable_gqa"):
        return func(*args, **kwargs)
    q, k, v = a["query"], a["key"], a["value"]
    out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, a.get("dropout_p", 0.0),
                                                                     a.get("is_causal", False), scale=a.get("scale"))
    return out[0]


def tensors_of(obj: Any) -> list[Tensor]:
    """Every tensor in a nested structure (dicts, lists, dataclasses' fields)."""
    if isinstance(obj, Tensor):
        return [obj]
    if hasattr(obj, "__dataclass_fields__"):
        obj = vars(obj)
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in tensors_of(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in tensors_of(v)]
    return []
