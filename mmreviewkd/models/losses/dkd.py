# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Decoupled knowledge distillation (DKD, Zhao et al., CVPR 2022)."""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError, check_number


def _is_one_hot(score, label: torch.Tensor) -> bool:
    """Whether ``score`` is the one-hot vector of class ``label``."""
    score = torch.as_tensor(score).float()
    if score.ndim != 1 or not 0 <= int(label) < len(score):
        return False
    return torch.equal(score, F.one_hot(label, len(score)).to(score))


def labels_from_samples(owner: str, data_samples: Sequence,
                        num_samples: int) -> torch.Tensor:
    """The hard labels (N,) of mmpretrain ``DataSample``s (``gt_label``).

    Raises ConfigError when a sample has no single hard label or when its
    ``gt_score`` is not the one-hot of ``gt_label`` (soft labels of Mixup /
    CutMix batch augments, where the hard label does not describe the
    mixed image).
    """
    if len(data_samples) != num_samples:
        raise ConfigError(f'{owner}: got {len(data_samples)} data samples '
                          f'for {num_samples} logits rows.')
    labels = []
    for ds in data_samples:
        label = getattr(ds, 'gt_label', None)
        if label is None or torch.as_tensor(label).numel() != 1:
            raise ConfigError(
                f'{owner}: needs one ground-truth class per sample '
                f'(data_sample.gt_label), got {label!r}; use it on '
                f'single-label classification data.')
        label = torch.as_tensor(label).reshape(()).long()
        score = getattr(ds, 'gt_score', None)
        if score is not None and not _is_one_hot(score, label):
            raise ConfigError(
                f'{owner}: the data samples carry soft labels (gt_score not '
                f'one-hot, e.g. from Mixup/CutMix batch_augments); remove '
                f'the batch augments or use KDLoss.')
        labels.append(label)
    return torch.stack(labels)


@MODELS.register_module()
class DKDLoss(nn.Module):
    """Decoupled knowledge distillation loss (DKD, "Decoupled Knowledge
    Distillation", Zhao et al., CVPR 2022), as ``dkd_loss`` of mdistiller.

    With :math:`p = \\mathrm{softmax}(z / \\tau)` and target class :math:`y`:

    - TCKD: KL(teacher || student) of the binary distributions
      :math:`(p_y, 1 - p_y)`;
    - NCKD: KL(teacher || student) of the distributions among the
      non-target classes, :math:`\\mathrm{softmax}(z / \\tau - 1000\\,
      [k = y])` (the target logit masked with -1000 before the softmax, as
      the reference does);

    both summed over their classes, averaged over the batch and scaled by
    :math:`\\tau^2`; the loss is :math:`\\alpha\\,TCKD + \\beta\\,NCKD`
    times ``loss_weight``. The teacher logits are a fixed target
    (detached). Computed in fp32, also under autocast.

    The linear warm-up of the DKD authors (20 epochs on CIFAR-100) is not
    applied here: set ``warmup_epochs=20`` on the distiller's term.

    Needs the hard ground-truth labels: read from ``data_samples``
    (``ds.gt_label``) or given directly as ``labels``. Soft labels (Mixup /
    CutMix) raise :class:`ConfigError`.

    Args:
        alpha (float): Weight of TCKD. Defaults to 1.0.
        beta (float): Weight of NCKD. Defaults to 8.0 (CIFAR-100).
        tau (float): Temperature. Defaults to 4.0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 alpha: float = 1.0,
                 beta: float = 8.0,
                 tau: float = 4.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha = check_number('DKDLoss', 'alpha', alpha)
        self.beta = check_number('DKDLoss', 'beta', beta)
        self.tau = check_number('DKDLoss', 'tau', tau, positive=True)
        self.loss_weight = check_number('DKDLoss', 'loss_weight', loss_weight)

    def forward(self,
                student: torch.Tensor,
                teacher: torch.Tensor,
                data_samples: Optional[Sequence] = None,
                labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss times ``loss_weight``.

        Args:
            student (Tensor): Student logits (N, K), K >= 2.
            teacher (Tensor): Teacher logits (N, K).
            data_samples (Sequence, optional): mmpretrain ``DataSample``s
                with ``gt_label``; used when ``labels`` is None.
            labels (Tensor, optional): Class indices (N,) (LongTensor).

        Returns:
            Tensor: The scalar loss.
        """
        if student.dim() != 2 or student.shape != teacher.shape \
                or student.shape[1] < 2:
            raise ConfigError(
                f'DKDLoss: expects student and teacher logits of the same '
                f'shape (N, K) with K >= 2, got {tuple(student.shape)} and '
                f'{tuple(teacher.shape)}; use inputs=("logits", "logits").')
        n, k = student.shape
        if labels is None:
            if data_samples is None:
                raise ConfigError('DKDLoss: needs the ground-truth labels; '
                                  'pass data_samples (with gt_label) or '
                                  'labels.')
            labels = labels_from_samples('DKDLoss', data_samples, n)
        labels = torch.as_tensor(labels).to(student.device).long()
        if labels.shape != (n, ) or bool(((labels < 0) | (labels >= k)).any()):
            raise ConfigError(f'DKDLoss: labels must be N={n} class indices '
                              f'in [0, {k}), got {labels.tolist()}.')
        with torch.autocast(device_type=student.device.type, enabled=False):
            z_s = student.float() / self.tau
            z_t = teacher.detach().float() / self.tau
            gt = F.one_hot(labels, k).bool()
            tckd = self._kl(self._binary_log_probs(z_t, gt, labels),
                            self._binary_log_probs(z_s, gt, labels))
            nckd = self._kl(F.log_softmax(z_t - 1000.0 * gt, dim=1),
                            F.log_softmax(z_s - 1000.0 * gt, dim=1))
            loss = self.alpha * tckd + self.beta * nckd
            return loss * (self.tau**2 * self.loss_weight)

    @staticmethod
    def _binary_log_probs(z: torch.Tensor, gt: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
        """``log (p_y, 1 - p_y)`` (N, 2) of ``softmax(z)``, computed with
        log-sum-exp (the reference takes the log of the summed
        probabilities; same values, no log(0))."""
        total = torch.logsumexp(z, dim=1)
        target = z.gather(1, labels[:, None])[:, 0]
        others = torch.logsumexp(z.masked_fill(gt, float('-inf')), dim=1)
        return torch.stack([target - total, others - total], dim=1)

    @staticmethod
    def _kl(log_t: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
        """KL(t || s) summed over classes, averaged over the batch."""
        return (log_t.exp() * (log_t - log_s)).sum(dim=1).mean()
