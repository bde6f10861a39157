"""The dtype names a config may use (``backbone.dtype``, ``train.master_dtype``, ``reward.dtype`` ...)."""

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
