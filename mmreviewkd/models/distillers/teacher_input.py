# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Give the teacher its own normalisation of the student's batch.

The runner runs the distiller's (= the student's) data preprocessor once per
batch. When the teacher was trained with another normalisation (mean, std or
BGR/RGB order, e.g. a caffe-style teacher and a torchvision-style student),
feeding it the student's tensor would silently shift its features. The
:class:`TeacherRenormalizer` undoes the student's normalisation and applies
the teacher's, on the same resized, augmented and padded batch, so both
networks see the same pixels and the same padded size (what ReviewKD
compares level by level), each normalised its own way.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmreviewkd.utils.errors import ConfigError


def normalization_of(
        preprocessor: nn.Module,
        channels: int = 3
) -> Tuple[torch.Tensor, torch.Tensor, bool, bool, float]:
    """``(mean, std, swaps_channels, normalizes, pad_value)`` of an
    mmengine / mmdet / mmpretrain image data preprocessor.

    A preprocessor that does not normalise counts as mean 0, std 1.
    ``swaps_channels`` is True when it converts BGR <-> RGB.
    """
    normalizes = bool(getattr(preprocessor, '_enable_normalize', False))
    if normalizes:
        mean = preprocessor.mean.detach().float().reshape(-1).cpu()
        std = preprocessor.std.detach().float().reshape(-1).cpu()
    else:
        mean, std = torch.zeros(channels), torch.ones(channels)
    swaps = bool(
        getattr(preprocessor, '_channel_conversion',
                getattr(preprocessor, 'to_rgb', False)))
    pad_value = float(getattr(preprocessor, 'pad_value', 0))
    return mean, std, swaps, normalizes, pad_value


class TeacherRenormalizer(nn.Module):
    """Map a batch normalised for the student to the teacher's
    normalisation.

    With ``x_s = (P_s(img) - mean_s) / std_s`` (``P`` the channel order a
    preprocessor produces) the teacher input is
    ``x_t = (flip(x_s) * flip(std_s) + flip(mean_s) - mean_t) / std_t``,
    ``flip`` reversing the channels iff exactly one of the two converts
    BGR <-> RGB. Padding is not an image: pixels outside each sample's
    ``img_shape`` get the teacher's ``pad_value``, exactly what the teacher's
    own preprocessor would have written there.

    The buffers are not persistent: checkpoints do not change.

    Args:
        student_mean / student_std / teacher_mean / teacher_std (Sequence
            [float]): Per-channel statistics (the student's channel order
            for the student, the teacher's for the teacher).
        flip_channels (bool): Reverse the channel order (BGR <-> RGB).
        pad_value (float): The teacher's padding value.
    """

    def __init__(self,
                 student_mean: Sequence[float],
                 student_std: Sequence[float],
                 teacher_mean: Sequence[float],
                 teacher_std: Sequence[float],
                 flip_channels: bool = False,
                 pad_value: float = 0.) -> None:
        super().__init__()
        s_mean = torch.as_tensor(student_mean, dtype=torch.float32)
        s_std = torch.as_tensor(student_std, dtype=torch.float32)
        t_mean = torch.as_tensor(teacher_mean, dtype=torch.float32)
        t_std = torch.as_tensor(teacher_std, dtype=torch.float32)
        if not (s_mean.numel() == s_std.numel() == t_mean.numel() ==
                t_std.numel()):
            raise ConfigError('TeacherRenormalizer: student and teacher '
                              'statistics must have one value per channel.')
        if bool((s_std == 0).any()) or bool((t_std == 0).any()):
            raise ConfigError('TeacherRenormalizer: std must be non-zero.')
        self.flip_channels = bool(flip_channels)
        if self.flip_channels:
            s_mean, s_std = s_mean.flip(0), s_std.flip(0)
        # x_t = flip(x_s) * scale + shift
        self.register_buffer(
            'scale', (s_std / t_std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer(
            'shift', ((s_mean - t_mean) / t_std).view(1, -1, 1, 1),
            persistent=False)
        self.pad_value = float(pad_value)

    @classmethod
    def between(
        cls, student_preprocessor: nn.Module,
        teacher_preprocessor: Optional[nn.Module]
    ) -> Optional['TeacherRenormalizer']:
        """The renormaliser from the student's preprocessor to the
        teacher's, or None when none is needed: the teacher's preprocessor
        does not normalise (e.g. an inline teacher dict without one; it then
        shares the student's input) or normalises exactly like the
        student's."""
        if teacher_preprocessor is None:
            return None
        t_mean, t_std, t_swap, t_norm, t_pad = normalization_of(
            teacher_preprocessor)
        if not t_norm:
            return None
        s_mean, s_std, s_swap, _, _ = normalization_of(
            student_preprocessor, channels=t_mean.numel())
        if s_mean.numel() != t_mean.numel():
            raise ConfigError(
                f'ReviewKDDistiller: the student normalises '
                f'{s_mean.numel()} channels but the teacher '
                f'{t_mean.numel()}; they must see the same images.')
        if (s_swap == t_swap and torch.allclose(s_mean, t_mean)
                and torch.allclose(s_std, t_std)):
            return None
        return cls(s_mean, s_std, t_mean, t_std, s_swap != t_swap, t_pad)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[Sequence] = None) -> torch.Tensor:
        """Re-normalise ``inputs`` (N, C, H, W) for the teacher.

        Args:
            inputs (Tensor): The student's preprocessed batch.
            data_samples (Sequence, optional): Their data samples; those
                with an ``img_shape`` metainfo smaller than the batch get the
                teacher's ``pad_value`` outside it.

        Returns:
            Tensor: The teacher's input, same shape and dtype.
        """
        x = inputs.flip(1) if self.flip_channels else inputs
        out = x.float() * self.scale + self.shift
        height, width = out.shape[-2:]
        for i, sample in enumerate(data_samples or []):
            shape = getattr(sample, 'metainfo', {}).get('img_shape')
            if shape is None:
                continue
            h, w = int(shape[0]), int(shape[1])
            if h < height:
                out[i, :, h:, :] = self.pad_value
            if w < width:
                out[i, :, :h, w:] = self.pad_value
        return out.to(inputs.dtype)

    def extra_repr(self) -> str:
        return (f'flip_channels={self.flip_channels}, '
                f'pad_value={self.pad_value}')
