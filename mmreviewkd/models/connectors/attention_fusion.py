# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The fusion step of ABF as one autograd function.

``fused = x * a0 + up(r) * a1`` with ``a = sigmoid(conv1x1(cat[x, up(r)]))``
and ``up`` the nearest resize of the residual ``r`` to the size of ``x``.

Written out op by op (see :meth:`ABF._fuse_reference`) autograd keeps
several full-size temporaries per level and passes over the full-size
tensors about a dozen times in forward and backward: the resized residual,
the concatenation, both products and their gradients, and the 2-channel
attention conv's backward, which goes through a slow generic path.

When the residual's size divides the fused size (the usual 2x of a feature
pyramid, or equal sizes) and the tensors are float32/float64 outside
autocast, :func:`attention_fusion` computes the same values and gradients
with a hand-written backward instead:

- on CPU, with the C++ kernels in ``csrc/attention_fusion_cpu.cpp``: one
  pass over the channels for the forward and two for the backward, a block
  of pixels at a time, with the attention logits, the sigmoid, the products,
  the upsampling and its adjoint fused (built on first use, see
  :mod:`.cpu_kernels`; without them the PyTorch-op version below is used).
- elsewhere (CUDA), with PyTorch ops: the residual's half of the attention
  conv runs at the residual's resolution and only its 2-channel result is
  broadcast; ``up(r)`` is one strided copy of a broadcast view; in the
  backward the attention gradients are per-pixel channel sums, the input
  gradient of the attention conv is two broadcast products (of ``x``) and
  a 2-input-channel 1x1 conv (of the low-resolution residual), its weight
  gradient a batched matrix product.

The values and every gradient equal the reference formula up to float
rounding (``tests/test_models/test_abf.py``). Anything else (autocast, half
precision, sizes that do not divide) uses the reference formula.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .cpu_kernels import autocast_on, cpu_kernels_available


def fast_path_applies(x: torch.Tensor, residual: torch.Tensor) -> bool:
    """Whether :func:`attention_fusion` can use its hand-written backward."""
    if x.dtype not in (torch.float32, torch.float64) or \
            residual.dtype != x.dtype:
        return False
    if autocast_on(x.device.type):
        return False
    (h, w), (H, W) = residual.shape[-2:], x.shape[-2:]
    return h > 0 and w > 0 and H % h == 0 and W % w == 0


class _AttentionFusion(torch.autograd.Function):
    """Autograd function behind :func:`attention_fusion` (PyTorch ops)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, residual: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        n, m, H, W = x.shape
        h, w = residual.shape[-2:]
        sh, sw = H // h, W // w
        x = x.contiguous()
        residual = residual.contiguous()
        logits = F.conv2d(x, weight[:, :m], bias)
        logits.view(n, 2, h, sh, w, sw).add_(
            F.conv2d(residual, weight[:, m:]).view(n, 2, h, 1, w, 1))
        att = logits.sigmoid_()
        # nearest resize by integer factors as one strided copy (PyTorch's
        # CPU upsampling kernel copies twice); kept for the backward, as
        # autograd would keep it for the product
        up_r = residual
        if (sh, sw) != (1, 1):
            up_r = residual[:, :, :, None, :, None].expand(
                n, m, h, sh, w, sw).reshape(n, m, H, W)
        fused = torch.mul(up_r, att[:, 1:2])
        fused.addcmul_(x, att[:, 0:1])
        ctx.save_for_backward(x, residual, up_r, weight, att)
        return fused

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor],
                                                   ...]:
        x, residual, up_r, weight, att = ctx.saved_tensors
        n, m, H, W = x.shape
        h, w = residual.shape[-2:]
        sh, sw = H // h, W // w
        grad = grad.contiguous()
        need_x, need_r, need_w, need_b = ctx.needs_input_grad
        # d fused / d a0 = x, d fused / d a1 = up(r): summed over channels
        grad_att = torch.empty_like(att)
        torch.sum(grad * x, 1, keepdim=True, out=grad_att[:, 0:1])
        torch.sum(grad * up_r, 1, keepdim=True, out=grad_att[:, 1:2])
        grad_logits = grad_att.mul_(att).mul_(1 - att)  # sigmoid'
        grad_logits_low = grad_logits.view(n, 2, h, sh, w, sw).sum((3, 5))
        grad_x = grad_r = grad_w = grad_b = None
        if need_x:
            # the 2 -> M "conv" of the logits' gradient as two broadcast
            # products: faster than a 2-input-channel convolution
            grad_x = torch.mul(grad, att[:, 0:1])
            w_x = weight[:, :m].view(2, 1, m, 1, 1)
            grad_x.addcmul_(grad_logits[:, 0:1], w_x[0]).addcmul_(
                grad_logits[:, 1:2], w_x[1])
        if need_r:
            grad_up = grad * att[:, 1:2]
            if (sh, sw) != (1, 1):
                grad_up = torch.ops.aten.upsample_nearest2d_backward(
                    grad_up, [H, W], [n, m, h, w], None, None)
            grad_r = grad_up.add_(
                F.conv2d(grad_logits_low,
                         weight[:, m:].transpose(0, 1).contiguous()))
        if need_w:
            grad_w = torch.cat([
                torch.bmm(grad_logits.view(n, 2, H * W),
                          x.view(n, m, H * W).transpose(1, 2)).sum(0),
                torch.bmm(grad_logits_low.view(n, 2, h * w),
                          residual.view(n, m, h * w).transpose(1, 2)).sum(0)
            ], 1).view_as(weight)
        if need_b:  # False when bias is None
            grad_b = grad_logits.sum((0, 2, 3))
        return grad_x, grad_r, grad_w, grad_b


class _AttentionFusionCPU(torch.autograd.Function):
    """Autograd function behind :func:`attention_fusion` on CPU (C++)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, residual: torch.Tensor,
                weight: torch.Tensor,
                bias: Optional[torch.Tensor]) -> torch.Tensor:
        # the kernels work channels-last: convert here, so that the tensors
        # saved for the backward are already in that layout
        x = x.contiguous(memory_format=torch.channels_last)
        residual = residual.contiguous(memory_format=torch.channels_last)
        fused, att = torch.ops.mmreviewkd_cpu.attention_fusion_forward(
            x, residual, weight, bias)
        ctx.save_for_backward(x, residual, weight, att)
        return fused

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor],
                                                   ...]:
        x, residual, weight, att = ctx.saved_tensors
        grads = torch.ops.mmreviewkd_cpu.attention_fusion_backward(
            grad, x, residual, att, weight)
        return tuple(g if need else None
                     for g, need in zip(grads, ctx.needs_input_grad))


def attention_fusion(x: torch.Tensor, residual: torch.Tensor,
                     weight: torch.Tensor,
                     bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Fuse ``x`` with the nearest-resized ``residual`` (fast path).

    Args:
        x (Tensor): (N, M, H, W), the level's own feature.
        residual (Tensor): (N, M, h, w) with ``H % h == W % w == 0``.
        weight (Tensor): (2, 2M, 1, 1), the attention conv's weight; input
            channels ``[:M]`` act on ``x``, ``[M:]`` on the residual.
        bias (Tensor, optional): (2,), the attention conv's bias.

    Returns:
        Tensor: (N, M, H, W), ``x * a0 + up(residual) * a1``.
    """
    if x.device.type == 'cpu' and cpu_kernels_available():
        return _AttentionFusionCPU.apply(x, residual, weight, bias)
    return _AttentionFusion.apply(x, residual, weight, bias)
