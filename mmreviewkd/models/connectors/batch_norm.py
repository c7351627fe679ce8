# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Training-mode batch norm of the ABF layers with CPU kernels.

PyTorch's CPU batch norm computes the batch mean and variance with a scalar
Welford loop (on the full-resolution ABF features, 64 channels at 32x32 for
a CIFAR batch of 64, its forward takes longer than its backward) and its
channels-last backward is several times slower than the contiguous one.
Here the statistics and the backward come from the streaming kernels in
``csrc/batch_norm_cpu.cpp`` (see :mod:`.cpu_kernels`), which work on the
channels-last layout of the ABF chain on CPU, and the normalisation from
PyTorch's batch norm given those statistics; running statistics are updated
exactly as :class:`torch.nn.BatchNorm2d` does. Values and gradients equal
``nn.BatchNorm2d`` up to float rounding
(``tests/test_models/test_cpu_kernels.py``).

It applies to a plain :class:`torch.nn.BatchNorm2d` in training mode on CPU
float32/float64 tensors outside autocast; anything else (SyncBN, other norm
layers, eval mode, CUDA, autocast) runs the layer itself.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .cpu_kernels import autocast_on, cpu_kernels_available


def batch_norm_applies(norm: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`batch_norm_train` can stand in for ``norm(x)``."""
    if type(norm) is not nn.BatchNorm2d or not norm.training:
        return False
    if x.device.type != 'cpu' or x.dim() != 4 or \
            x.dtype not in (torch.float32, torch.float64):
        return False
    if norm.affine and norm.weight.dtype != x.dtype:
        return False
    # one value per channel: let the layer raise its own error
    if x.numel() <= x.shape[1] or autocast_on('cpu'):
        return False
    return cpu_kernels_available()


class _BatchNormTrain(torch.autograd.Function):
    """Batch-statistics normalisation (kernels for statistics, backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: Optional[torch.Tensor],
                bias: Optional[torch.Tensor], eps: float
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, var = torch.ops.mmreviewkd_cpu.batch_norm_stats(x)
        out = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(var + eps))
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor, *_) -> tuple:
        x, weight, mean, invstd = ctx.saved_tensors
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        grad_x, grad_w, grad_b = \
            torch.ops.mmreviewkd_cpu.batch_norm_backward(
                grad, x, mean, invstd, weight, need_x)
        return (grad_x if need_x else None, grad_w if need_w else None,
                grad_b if need_b else None, None)


def _update_running_stats(norm: nn.BatchNorm2d, mean: torch.Tensor,
                          var: torch.Tensor, count: int) -> None:
    """What ``nn.BatchNorm2d`` does to its buffers in training mode, given
    the batch mean and biased variance of ``count`` values per channel."""
    if not norm.track_running_stats:
        return
    with torch.no_grad():
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            factor = 1.0 / float(norm.num_batches_tracked)
        else:
            factor = norm.momentum
        norm.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
        norm.running_var.mul_(1 - factor).add_(
            var, alpha=factor * count / (count - 1))


def batch_norm_train(x: torch.Tensor, norm: nn.BatchNorm2d) -> torch.Tensor:
    """``norm(x)`` for a training-mode ``nn.BatchNorm2d`` (see the module
    docstring), including its running-statistics update."""
    out, mean, var = _BatchNormTrain.apply(x, norm.weight, norm.bias,
                                           norm.eps)
    _update_running_stats(norm, mean, var, x.numel() // x.shape[1])
    return out
