# Copyright (c) mmreviewkd contributors. All rights reserved.
from contextlib import contextmanager
from typing import Union

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper

from mmreviewkd.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision without loss scaling, for devices MMEngine's
    ``AmpOptimWrapper`` refuses (CPU).

    The forward runs under ``torch.autocast(device_type, dtype)``; bf16 needs
    no loss scaling, so backward and step are the plain ``OptimWrapper``'s.
    ``tools/train.py --amp`` picks this wrapper with bf16 on CPU and MMEngine's
    ``AmpOptimWrapper`` (fp16, dynamic loss scale) on GPU.

    Args:
        dtype (str | torch.dtype): Autocast dtype. Defaults to 'bfloat16'.
        device_type (str): Autocast device type. Defaults to 'cpu'.
        **kwargs: Passed to :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 device_type: str = 'cpu',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype,
                                                              str) else dtype
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(
                device_type=self.device_type, dtype=self.cast_dtype):
            yield
