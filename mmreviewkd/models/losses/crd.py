# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Contrastive representation distillation (CRD, Tian et al., ICLR 2020)."""
import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmreviewkd.registry import MODELS
from mmreviewkd.utils.errors import ConfigError

#: added to the NCE denominators, as the reference
NCE_EPS = 1e-7


class CRDMemory(nn.Module):
    """The memory bank of CRD: one L2-normalised embedding per training
    sample for the student and for the teacher, plus the samples' labels.

    Buffers (all saved in checkpoints):

    - ``memory_s``, ``memory_t`` (num_data, feat_dim): initialised uniform in
      ``[-stdv, stdv]``, ``stdv = 1 / sqrt(feat_dim / 3)``, as the
      reference (RepDistiller ``ContrastMemory``).
    - ``labels`` (num_data, ): the class of each sample, -1 until the sample
      has been seen.
    - ``z`` (2, ): the NCE normalisation constants of the student and the
      teacher side, -1 until estimated on the first batch.

    Under DDP each rank keeps and updates its own bank from its own batches,
    as the reference's single process does; the configs set
    ``broadcast_buffers=False`` so that rank 0's bank does not overwrite the
    others at every forward.

    Args:
        num_data (int): Size of the training set.
        feat_dim (int): Embedding size.
        num_negatives (int): Negatives per positive.
        momentum (float): Weight of the old entry in the update.
        neg_sampling (str): ``'other_class'`` or ``'uniform'``; see
            :class:`CRDLoss`.
    """

    #: rejection rounds before the exact per-row fallback
    max_rounds = 32

    def __init__(self, num_data: int, feat_dim: int, num_negatives: int,
                 momentum: float, neg_sampling: str) -> None:
        super().__init__()
        self.num_data = num_data
        self.num_negatives = num_negatives
        self.momentum = momentum
        self.neg_sampling = neg_sampling
        stdv = 1.0 / math.sqrt(feat_dim / 3)
        for name in ('memory_s', 'memory_t'):
            self.register_buffer(
                name,
                torch.rand(num_data, feat_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer('labels',
                             torch.full((num_data, ), -1, dtype=torch.long))
        self.register_buffer('z', torch.full((2, ), -1.0))

    @torch.no_grad()
    def sample(self, indices: torch.Tensor) -> torch.Tensor:
        """Draw ``num_negatives`` negatives per positive (with replacement).

        Never the positive's own index; with ``'other_class'`` never a
        sample whose label is known and equal to the positive's (slots of
        unknown label are allowed).

        Args:
            indices (Tensor): (N, ) positive sample indices.

        Returns:
            Tensor: (N, num_negatives) long.
        """
        n, k = indices.numel(), self.num_negatives
        device = indices.device
        pos = indices.view(-1, 1)
        if self.neg_sampling == 'uniform':
            # uniform over the num_data - 1 other indices
            neg = torch.randint(0, self.num_data - 1, (n, k), device=device)
            return neg + (neg >= pos).long()
        anchor = self.labels[indices].view(-1, 1)
        neg = torch.randint(0, self.num_data, (n, k), device=device)
        for _ in range(self.max_rounds):
            bad = self._forbidden(neg, pos, anchor)
            num_bad = int(bad.sum())
            if num_bad == 0:
                return neg
            neg[bad] = torch.randint(
                0, self.num_data, (num_bad, ), device=device)
        # rare (few allowed samples): draw the rest from explicit lists
        bad = self._forbidden(neg, pos, anchor)
        for row in bad.any(1).nonzero().view(-1).tolist():
            allowed = (~self._forbidden(
                torch.arange(self.num_data, device=device).view(1, -1),
                pos[row:row + 1], anchor[row:row + 1])).nonzero()[:, 1]
            if allowed.numel() == 0:
                raise ConfigError(
                    f'CRDLoss: sample {int(pos[row])} has no allowed '
                    f'negative (all other samples share its class); use '
                    f'neg_sampling="uniform".')
            pick = torch.randint(
                0, allowed.numel(), (int(bad[row].sum()), ), device=device)
            neg[row, bad[row]] = allowed[pick]
        return neg

    def _forbidden(self, neg: torch.Tensor, pos: torch.Tensor,
                   anchor: torch.Tensor) -> torch.Tensor:
        """Mask of negatives equal to the positive or (known) of its class."""
        return (neg == pos) | ((anchor >= 0) & (self.labels[neg] == anchor))

    @torch.no_grad()
    def update(self, indices: torch.Tensor, emb_s: torch.Tensor,
               emb_t: torch.Tensor) -> None:
        """``m[i] <- normalize(momentum * m[i] + (1 - momentum) * e)`` at the
        batch's rows ``i`` of both banks."""
        for bank, emb in ((self.memory_s, emb_s), (self.memory_t, emb_t)):
            rows = bank.index_select(0, indices) * self.momentum
            rows.add_(emb.detach().to(rows) * (1 - self.momentum))
            bank.index_copy_(0, indices, F.normalize(rows, dim=1))


@MODELS.register_module()
class CRDLoss(nn.Module):
    """Contrastive representation distillation, as RepDistiller's CRD
    (``CRDLoss`` + ``ContrastMemory`` + ``ContrastLoss``, NCE form).

    Student and teacher embeddings (N, C) are each mapped by a linear layer
    to ``feat_dim`` and L2-normalised (both layers are trained). Each side is
    contrasted against the other side's memory bank: for the student, with
    :math:`v_s` its embedding and :math:`m^t_j` the teacher bank's rows at
    the positive (the sample itself) and ``K`` negatives,
    :math:`P_j = \\exp(m^t_j \\cdot v_s / \\tau) / Z_s` and

    .. math::
        L_s = -\\frac{1}{N}\\sum_{b}\\Big[\\log\\frac{P_0}{P_0 + K P_n +
            \\epsilon} + \\sum_{j=1}^{K}\\log\\frac{K P_n}{P_j + K P_n +
            \\epsilon}\\Big]

    with :math:`P_n = 1 / \\mathrm{num\\_data}`, :math:`\\epsilon = 10^{-7}`
    and :math:`Z_s` the mean of :math:`\\exp(\\cdot / \\tau)` over the first
    batch times ``num_data`` (fixed afterwards, a buffer); the teacher side
    likewise against the student bank. The loss is
    :math:`(L_s + L_t) \\cdot` ``loss_weight``, in fp32. After use, both
    banks are updated at the batch's rows (:class:`CRDMemory`).

    Sample indices come from ``data_samples`` (``metainfo['sample_idx']``,
    the index in the training set) and labels from their ``gt_label``.

    Negatives: ``'other_class'`` (default, the authors' CIFAR ``exact``
    mode) draws only samples of other classes; labels are learnt as samples
    are seen, and samples not seen yet count as allowed. ``'uniform'``
    draws any index but the positive. Both draw with replacement (the
    reference's exact mode draws without; the difference is negligible for
    ``num_negatives`` well below ``num_data``).

    Args:
        in_channels (int): Student embedding size.
        out_channels (int): Teacher embedding size.
        num_data (int): Size of the training set (memory bank rows).
        feat_dim (int): Size of the contrastive embedding. Defaults to 128.
        num_negatives (int): Negatives per positive. Defaults to 16384.
        tau (float): Temperature. Defaults to 0.07.
        momentum (float): Memory update momentum. Defaults to 0.5.
        neg_sampling (str): ``'other_class'`` or ``'uniform'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 num_data: int,
                 feat_dim: int = 128,
                 num_negatives: int = 16384,
                 tau: float = 0.07,
                 momentum: float = 0.5,
                 neg_sampling: str = 'other_class',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        for name, value in (('in_channels', in_channels), ('out_channels',
                                                           out_channels),
                            ('feat_dim', feat_dim), ('num_negatives',
                                                     num_negatives)):
            if isinstance(value, bool) or not isinstance(value,
                                                         int) or value <= 0:
                raise ConfigError(f'CRDLoss: {name} must be a positive int, '
                                  f'got {value!r}.')
        if isinstance(num_data, bool) or not isinstance(
                num_data, int) or num_data < 2:
            raise ConfigError(f'CRDLoss: num_data must be the size of the '
                              f'training set (an int >= 2), got '
                              f'{num_data!r}.')
        if neg_sampling not in ('other_class', 'uniform'):
            raise ConfigError(f'CRDLoss: neg_sampling must be "other_class" '
                              f'or "uniform", got {neg_sampling!r}.')
        if not 0 <= momentum < 1 or not tau > 0:
            raise ConfigError(f'CRDLoss: need 0 <= momentum < 1 and tau > 0, '
                              f'got momentum={momentum}, tau={tau}.')
        self.num_data = num_data
        self.tau = float(tau)
        self.loss_weight = float(loss_weight)
        self.embed_s = nn.Linear(in_channels, feat_dim)
        self.embed_t = nn.Linear(out_channels, feat_dim)
        self.memory = CRDMemory(num_data, feat_dim, num_negatives,
                                float(momentum), neg_sampling)

    def _sample(self, indices: torch.Tensor) -> torch.Tensor:
        """(N, K) negative indices; tests may replace it."""
        return self.memory.sample(indices)

    def embed(self, x: torch.Tensor, student: bool) -> torch.Tensor:
        """Linear embedding + L2 normalisation of (N, C) or (N, C, 1, 1)."""
        x = x.flatten(1).float()
        linear = self.embed_s if student else self.embed_t
        return F.normalize(linear(x), dim=1)

    def nce_loss(self, scores: torch.Tensor) -> torch.Tensor:
        """NCE loss of (N, 1 + K) normalised scores (positive first)."""
        k = scores.shape[1] - 1
        noise = k / self.num_data
        log_pos = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
        log_neg = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
        return -(log_pos.sum() + log_neg.sum()) / scores.shape[0]

    def _read_indices(self, data_samples, indices, labels, device):
        """(indices, labels or None) as long tensors on ``device``."""
        if indices is None:
            try:
                indices = [ds.metainfo['sample_idx'] for ds in data_samples]
            except (TypeError, KeyError, AttributeError):
                raise ConfigError(
                    'CRDLoss: needs each sample\'s index in the training '
                    'set (data_samples[i].metainfo["sample_idx"]); use a '
                    'dataset that sets sample_idx.') from None
        if labels is None and data_samples is not None:
            try:
                labels = [int(ds.gt_label.view(-1)[0]) for ds in data_samples]
            except (AttributeError, IndexError):
                labels = None
        indices = torch.as_tensor(indices, dtype=torch.long).to(device)
        bad = (indices < 0) | (indices >= self.num_data)
        if bad.any():
            raise ConfigError(
                f'CRDLoss: sample index {int(indices[bad][0])} is outside '
                f'[0, num_data={self.num_data}); set num_data to the size of '
                f'the training set.')
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long).to(device)
        return indices.view(-1), labels

    def forward(self,
                student: torch.Tensor,
                teacher: torch.Tensor,
                data_samples: Optional[Sequence] = None,
                indices: Optional[Sequence[int]] = None,
                labels: Optional[Sequence[int]] = None,
                negatives: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The loss times ``loss_weight``; updates the memory bank.

        Args:
            student (Tensor): Student embeddings (N, C_s) or (N, C_s, 1, 1).
            teacher (Tensor): Teacher embeddings (N, C_t) or (N, C_t, 1, 1).
            data_samples (Sequence[DataSample], optional): Give the sample
                indices and labels.
            indices (Sequence[int] | Tensor, optional): Sample indices,
                instead of ``data_samples``.
            labels (Sequence[int] | Tensor, optional): Labels, instead of
                ``data_samples``.
            negatives (Tensor, optional): (N, K) negative indices to use
                instead of drawing them (tests).

        Returns:
            Tensor: The scalar loss.
        """
        device = student.device
        idx, lab = self._read_indices(data_samples, indices, labels, device)
        if idx.numel() != student.shape[0]:
            raise ConfigError(f'CRDLoss: got {idx.numel()} sample indices '
                              f'for a batch of {student.shape[0]}.')
        with torch.autocast(device_type=device.type, enabled=False):
            emb_s = self.embed(student, student=True)
            emb_t = self.embed(teacher.detach(), student=False)
            mem = self.memory
            if lab is not None:
                mem.labels.index_copy_(0, idx, lab)
            neg = self._sample(idx) if negatives is None else torch.as_tensor(
                negatives, dtype=torch.long, device=device)
            all_idx = torch.cat([idx.view(-1, 1), neg], dim=1)
            # student anchored on the teacher bank and vice versa
            scores_s = torch.exp(
                torch.einsum('nkd,nd->nk', mem.memory_t[all_idx], emb_s) /
                self.tau)
            scores_t = torch.exp(
                torch.einsum('nkd,nd->nk', mem.memory_s[all_idx], emb_t) /
                self.tau)
            if mem.z[0] < 0:
                mem.z.copy_(
                    torch.stack([scores_s.mean(),
                                 scores_t.mean()]).detach() * self.num_data)
            loss = self.nce_loss(scores_s / mem.z[0]) + self.nce_loss(
                scores_t / mem.z[1])
            mem.update(idx, emb_s, emb_t)
        return loss * self.loss_weight
