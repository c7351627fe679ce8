# Copyright (c) mmreviewkd contributors. All rights reserved.
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from mmreviewkd.registry import MODELS


def _bins_nest(x: torch.Tensor, size: int) -> bool:
    """Whether adaptive pooling of ``x`` to ``size`` has equal bins."""
    return x.shape[-2] % size == 0 and x.shape[-1] % size == 0


def _nested_pyramid(x: torch.Tensor, sizes: Sequence[int]) -> bool:
    """Whether every pooling size divides the map and the next finer size
    (equal bins, each coarser bin a union of finer ones)."""
    finer = x.shape[-2:]
    for size in sizes:
        if finer[0] % size or finer[1] % size:
            return False
        finer = (size, size)
    return True


def _expand(pooled: torch.Tensor) -> torch.Tensor:
    """``pooled`` (N, C, h, w) as a view (N, C, h, 1, w, 1) that broadcasts
    against :func:`_split` (nearest upsampling)."""
    n, c, ph, pw = pooled.shape
    return pooled.view(n, c, ph, 1, pw, 1)


def _split(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """``x`` (N, C, H, W) viewed as (N, C, ph, H/ph, pw, W/pw) (any
    layout: splitting a dimension is always a view)."""
    n, c, h, w = x.shape
    return x.view(n, c, ph, h // ph, pw, w // pw)


class _NestedHCL(torch.autograd.Function):
    """HCL of one level when the pooling bins nest exactly.

    Forward: the difference ``D = S - T``, its squared norm and the pyramid
    of average pools of ``D`` (each coarser size from the finer one).
    Backward in one pass: with ``N`` elements, ``Z = 1 + sum(w_k)`` and
    ``U`` nearest upsampling, ``dL/dS = 2 / (N Z) (D + U(G))`` where
    ``G = sum_k w_k U(P_k(D))`` is summed at the finest pooled size first.
    """

    @staticmethod
    def forward(ctx, student: torch.Tensor, teacher: torch.Tensor,
                sizes: Sequence[int], weights: Sequence[float]
                ) -> torch.Tensor:
        diff = student - teacher
        loss = torch.linalg.vector_norm(diff).square() / diff.numel()
        pooled, finer = [], diff
        for size, weight in zip(sizes, weights):
            finer = F.adaptive_avg_pool2d(finer, size)
            pooled.append(finer)
            loss = loss + weight * finer.square().mean()
        ctx.save_for_backward(diff, *pooled)
        ctx.weights = weights
        ctx.total_weight = 1.0 + sum(weights)
        return loss / ctx.total_weight

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple:
        diff, *pooled = ctx.saved_tensors
        scale = grad * (2.0 / (diff.numel() * ctx.total_weight))
        if not pooled:
            grad_s = diff * scale
        else:
            # coarsest to finest: G_k = w_k P_k + U(G_{k+1})
            acc = None
            for p, w in zip(reversed(pooled), reversed(ctx.weights)):
                acc = p * w if acc is None else (
                    _split(p * w, acc.shape[2], acc.shape[3]) +
                    _expand(acc)).reshape(p.shape)
            fine = pooled[0].shape[-2:]
            grad_s = (_split(diff, *fine) + _expand(acc)).mul_(
                scale).reshape(diff.shape)
        need_s, need_t = ctx.needs_input_grad[:2]
        return (grad_s if need_s else None, -grad_s if need_t else None,
                None, None)


@MODELS.register_module()
class HCLLoss(nn.Module):
    """Hierarchical context loss of ReviewKD.

    For every level with student output :math:`S` and teacher feature
    :math:`T` of the same shape (height :math:`H`):

    .. math::
        L = \\frac{\\mathrm{MSE}(S, T) + \\sum_k w_k\\,
            \\mathrm{MSE}(P_l(S), P_l(T))}{1 + \\sum_k w_k}

    where :math:`P_l` is adaptive average pooling to :math:`l \\times l`,
    :math:`l` taken from ``pool_sizes`` in order and skipped when
    :math:`l \\geq H`; the k-th pooled term actually used (k = 1, 2, ...)
    gets :math:`w_k = 0.5^k`. The loss is the plain sum of ``L`` over levels
    times ``loss_weight``. It is always accumulated in fp32, also under
    autocast.

    Args:
        pool_sizes (Sequence[int]): Output sizes of the pyramid poolings, in
            the order they are tried. Defaults to (4, 2, 1) as in the paper.
        loss_weight (float): Multiplier of the summed loss. Defaults to 1.0.
    """

    def __init__(self,
                 pool_sizes: Sequence[int] = (4, 2, 1),
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if loss_weight < 0:
            raise ValueError(f'HCLLoss: loss_weight must be >= 0, got '
                             f'{loss_weight}; use 0 to switch it off.')
        if not all(int(p) > 0 for p in pool_sizes):
            raise ValueError(f'HCLLoss: pool_sizes must be positive, got '
                             f'{tuple(pool_sizes)}.')
        self.pool_sizes = tuple(int(p) for p in pool_sizes)
        self.loss_weight = loss_weight

    def level_loss(self, student: torch.Tensor,
                   teacher: torch.Tensor) -> torch.Tensor:
        """HCL of one level, in fp32."""
        if student.shape != teacher.shape:
            raise ValueError(
                f'HCLLoss: student output {tuple(student.shape)} and teacher '
                f'feature {tuple(teacher.shape)} differ in shape; the '
                f'connector must map the student to the teacher\'s shape.')
        if student.is_contiguous(memory_format=torch.channels_last) and \
                not student.is_contiguous():
            # channels-last connector outputs (the ABF chain on CPU): one
            # layout conversion of the teacher map is cheaper than a
            # mixed-layout subtraction
            teacher = teacher.contiguous(memory_format=torch.channels_last)
        sizes = [size for size in self.pool_sizes if size < student.shape[2]]
        weights = [0.5**k for k in range(1, len(sizes) + 1)]
        if _nested_pyramid(student, sizes) and \
                student.dtype in (torch.float32, torch.float64) and \
                teacher.dtype == student.dtype:
            return _NestedHCL.apply(student, teacher, sizes, weights)
        # Pooling is linear: MSE(P(S), P(T)) = mean(P(S - T)^2). Pool the
        # difference once per size instead of both maps, and pool a coarser
        # size from the previous pooled map where the bins nest exactly.
        diff = student.float() - teacher.float()
        loss = diff.square().mean()
        total_weight = 1.0
        finest = diff  # an exact equal-bin average of diff
        for size, weight in zip(sizes, weights):
            source = finest if _bins_nest(finest, size) else diff
            pooled = F.adaptive_avg_pool2d(source, size)
            if _bins_nest(diff, size):
                finest = pooled
            loss = loss + weight * pooled.square().mean()
            total_weight += weight
        return loss / total_weight

    def forward(self, student_feats: Sequence[torch.Tensor],
                teacher_feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Sum of the per-level losses times ``loss_weight``.

        Args:
            student_feats (Sequence[Tensor]): Connector outputs, each
                (N, C, H, W).
            teacher_feats (Sequence[Tensor]): Teacher features, same shapes.

        Returns:
            Tensor: Scalar fp32 loss.
        """
        if len(student_feats) != len(teacher_feats):
            raise ValueError(
                f'HCLLoss: got {len(student_feats)} student levels but '
                f'{len(teacher_feats)} teacher levels; they must pair up.')
        with torch.autocast(
                device_type=student_feats[0].device.type, enabled=False):
            loss = sum(
                self.level_loss(s, t)
                for s, t in zip(student_feats, teacher_feats))
        return loss * self.loss_weight
