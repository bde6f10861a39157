"""The dtype names a config may use (``backbone.dtype``, ``train.master_dtype``, ``reward.dtype`` ...); float64 is for
exact tests on the toy backbone."""

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
