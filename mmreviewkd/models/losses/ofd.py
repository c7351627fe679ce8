# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Overhaul of feature distillation (OFD, Heo et al., ICCV 2019)."""
import math
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

Feats = Union[torch.Tensor, Sequence[torch.Tensor]]


def gaussian_negative_margin(mean: float, std: float) -> float:
    """Expectation of :math:`x` given :math:`x < 0`, for
    :math:`x \\sim \\mathcal{N}(m, s^2)` (OFD's margin).

    .. math::
        m - s \\frac{\\phi(m / s)}{\\Phi(-m / s)} \\quad\\text{if }
        \\Phi(-m / s) > 0.001, \\qquad -3 s \\text{ otherwise,}

    as mdistiller's ``OFD``, with :math:`\\Phi` from :func:`math.erf`.
    ``std`` is used as :math:`|s|`; ``s = 0`` gives ``min(m, 0)`` (the
    limit).
    """
    std = abs(std)
    if std == 0:
        return min(mean, 0.0)
    cdf = 0.5 * (1.0 + math.erf(-mean / std / math.sqrt(2.0)))
    if cdf > 0.001:
        pdf = math.exp(-(mean / std)**2 / 2) / math.sqrt(2 * math.pi)
        return mean - std * pdf / cdf
    return -3.0 * std


def margins_from_bn(bn: _BatchNorm) -> torch.Tensor:
    """Per-channel OFD margins from a BN's bias (mean) and |weight| (std).

    Returns:
        Tensor: (C, ) float32 on the BN's device.
    """
    if bn.weight is None or bn.bias is None:
        raise ConfigError(f'OFDLoss: the BN {bn} has no affine weight/bias, '
                          f'so it gives no margin; set margin_bns or '
                          f'margins.')
    std = bn.weight.detach().double().cpu().tolist()
    mean = bn.bias.detach().double().cpu().tolist()
    values = [gaussian_negative_margin(m, s) for m, s in zip(mean, std)]
    return torch.tensor(values, dtype=torch.float32, device=bn.weight.device)


def find_bn_before_relu(model: nn.Module, point: str) -> str:
    """Name of the BN whose statistics give the margin of the feature read at
    ``point`` (a name in ``model.named_modules()``).

    In this order: the point itself if it is a BN (CIFAR WRN
    ``backbone.block2.0.bn1``); else the last BN inside the point (a block
    ending in a BN, e.g. the CIFAR VGG blocks); else, for a leaf tap such as
    ``backbone.layer3.2.preact``, the last BN that is a direct child of the
    point's parent (``backbone.layer3.2.bn2``: the main path, never the
    shortcut's ``downsample.1``), or failing that the last BN anywhere inside
    the parent (``named_modules`` order).
    """
    modules = dict(model.named_modules())
    if point not in modules:
        raise ConfigError(f'OFDLoss: the teacher has no module {point!r}; '
                          f'check the term\'s teacher feature points.')
    module = modules[point]
    if isinstance(module, _BatchNorm):
        return point

    def last_bn(root: str, candidates) -> Optional[str]:
        names = [n for n, m in candidates if isinstance(m, _BatchNorm)]
        if not names:
            return None
        return '.'.join(filter(None, [root, names[-1]]))

    found = last_bn(point, module.named_modules())
    if found is None:
        parent_name = point.rpartition('.')[0]
        parent = modules[parent_name]
        found = last_bn(parent_name, parent.named_children()) or last_bn(
            parent_name, parent.named_modules())
    if found is None:
        raise ConfigError(f'OFDLoss: found no BatchNorm for the teacher '
                          f'point {point!r}; give margin_bns (the BN before '
                          f'each level\'s ReLU).')
    return found


@MODELS.register_module()
class OFDLoss(nn.Module):
    """Partial L2 distillation of pre-ReLU teacher features, as mdistiller's
    ``OFD``.

    Teacher features are read before the ReLU. Per level, with the
    connector's output :math:`s`, the teacher's feature :math:`t`
    (adaptive-average-pooled to the size of :math:`s` if it differs, as the
    reference) and a per-channel margin :math:`m < 0`:

    .. math::
        \\tau = \\max(t, m), \\qquad
        L = \\frac{1}{D}\\sum (s - \\tau)^2 \\,
            [\\, s > \\tau \\;\\lor\\; \\tau > 0 \\,]

    where :math:`D` is the batch size (``reduction='batchmean'``, the
    reference: mdistiller's ``mean(dim=0).sum()``, which its loss weight of
    0.001 assumes) or the number of elements (``reduction='mean'``). Level
    ``i`` of ``n`` (shallow to deep) is weighted :math:`1 / 2^{n-1-i}`
    (deepest 1) and the weighted sum is multiplied by ``loss_weight``.
    Computed in fp32.

    The margin of a channel is :func:`gaussian_negative_margin` of the
    bias (mean) and ``|weight|`` (std) of the BN right before the teacher's
    ReLU. They are buffers (saved in checkpoints), filled by
    :meth:`init_from_teacher`, which the distiller calls with the teacher and
    the module names of the term's teacher levels; see
    :func:`find_bn_before_relu` for how the BN is found.

    Args:
        margins (Sequence[Sequence[float]], optional): Per-level margins
            given directly; :meth:`init_from_teacher` then keeps them.
        margin_bns (Sequence[str], optional): Names (in the teacher's
            ``named_modules``) of the BN of each level, overriding the
            search.
        reduction (str): ``'batchmean'`` (sum / batch size, the reference)
            or ``'mean'`` (sum / number of elements). Defaults to
            ``'batchmean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 margins: Optional[Sequence[Sequence[float]]] = None,
                 margin_bns: Optional[Sequence[str]] = None,
                 reduction: str = 'batchmean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if reduction not in ('batchmean', 'mean'):
            raise ConfigError(f'OFDLoss: reduction must be "batchmean" or '
                              f'"mean", got {reduction!r}.')
        self.reduction = reduction
        self.loss_weight = float(loss_weight)
        self.margin_bns = None if margin_bns is None else list(margin_bns)
        #: the BN names the margins were computed from (for logs and tests)
        self.margin_sources: List[str] = []
        self.num_levels = 0
        self.fixed_margins = margins is not None
        if margins is not None:
            self.set_margins(
                [torch.as_tensor(m, dtype=torch.float32) for m in margins])

    @property
    def margins(self) -> List[torch.Tensor]:
        """The per-level margin buffers, each (C, )."""
        return [getattr(self, f'margin_{i}') for i in range(self.num_levels)]

    def set_margins(self, margins: Sequence[torch.Tensor]) -> None:
        """Replace the margin buffers by ``margins`` (one (C, ) per level)."""
        for i in range(self.num_levels):
            delattr(self, f'margin_{i}')
        for i, margin in enumerate(margins):
            self.register_buffer(f'margin_{i}',
                                 margin.detach().float().reshape(-1).clone())
        self.num_levels = len(margins)

    def init_from_teacher(self, teacher: nn.Module,
                          points: List[str]) -> None:
        """Compute the margins from the teacher's BNs.

        Args:
            teacher (nn.Module): The teacher model (weights loaded).
            points (list[str]): Module names whose outputs are the term's
                teacher levels, shallow to deep.
        """
        if self.fixed_margins:
            return
        names = self.margin_bns
        if names is None:
            names = [find_bn_before_relu(teacher, p) for p in points]
        elif len(names) != len(points):
            raise ConfigError(
                f'OFDLoss: margin_bns has {len(names)} entries but the term '
                f'has {len(points)} teacher levels; give one BN per level.')
        modules = dict(teacher.named_modules())
        bns = []
        for name in names:
            if not isinstance(modules.get(name), _BatchNorm):
                raise ConfigError(f'OFDLoss: {name!r} is not a BatchNorm of '
                                  f'the teacher; fix margin_bns.')
            bns.append(modules[name])
        self.set_margins([margins_from_bn(bn) for bn in bns])
        self.margin_sources = list(names)

    def _load_from_state_dict(self, state_dict: Dict, prefix: str, *args,
                              **kwargs) -> None:
        # create the margin buffers a checkpoint holds before loading them
        keys = [
            k for k in state_dict if k.startswith(prefix + 'margin_')
            and k[len(prefix) + 7:].isdigit()
        ]
        if keys and len(keys) != self.num_levels:
            self.set_margins([
                torch.zeros_like(state_dict[f'{prefix}margin_{i}'])
                for i in range(len(keys))
            ])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def level_loss(self, student: torch.Tensor, teacher: torch.Tensor,
                   margin: torch.Tensor) -> torch.Tensor:
        """The (unweighted) partial L2 of one level, in fp32."""
        student = student.float()
        teacher = teacher.detach().float()
        if tuple(teacher.shape[2:]) != tuple(student.shape[2:]):
            teacher = F.adaptive_avg_pool2d(teacher, student.shape[2:])
        if student.shape != teacher.shape or margin.numel() != student.shape[
                1]:
            raise ConfigError(
                f'OFDLoss: student {tuple(student.shape)}, teacher '
                f'{tuple(teacher.shape)} and {margin.numel()} margins do not '
                f'match; the connector must map to the teacher\'s channels.')
        target = torch.maximum(teacher, margin.to(teacher).view(1, -1, 1, 1))
        mask = (student > target) | (target > 0)
        total = ((student - target).square() * mask).sum()
        div = student.shape[0] if self.reduction == 'batchmean' \
            else student.numel()
        return total / div

    def forward(self, student: Feats, teacher: Feats) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor | Sequence[Tensor]): Connector output(s)
                (N, C_t, H, W), shallow to deep.
            teacher (Tensor | Sequence[Tensor]): Pre-ReLU teacher map(s).

        Returns:
            Tensor: The scalar loss.
        """
        students = [student] if torch.is_tensor(student) else list(student)
        teachers = [teacher] if torch.is_tensor(teacher) else list(teacher)
        if self.num_levels == 0:
            raise ConfigError(
                'OFDLoss: no margins yet; the distiller must call '
                'init_from_teacher(teacher, points) (or give margins=...) '
                'before the first forward.')
        n = len(students)
        if not len(teachers) == n == self.num_levels:
            raise ConfigError(
                f'OFDLoss: got {n} student and {len(teachers)} teacher maps '
                f'for {self.num_levels} margin levels; they must pair up.')
        loss = sum(
            self.level_loss(s, t, m) / 2**(n - 1 - i)
            for i, (s, t, m) in enumerate(zip(students, teachers,
                                              self.margins)))
        return loss * self.loss_weight
