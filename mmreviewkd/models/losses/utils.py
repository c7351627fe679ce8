# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Helpers shared by the feature losses."""
from typing import Tuple

import torch
import torch.nn.functional as F


def pool_to_common_size(
        student: torch.Tensor,
        teacher: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool each map to the smaller height and the smaller
    width of the two (the references pool the larger map to the smaller,
    square; this also handles non-square maps). Maps already at that size
    are returned as they are."""
    size = (min(student.shape[2], teacher.shape[2]),
            min(student.shape[3], teacher.shape[3]))
    if tuple(student.shape[2:]) != size:
        student = F.adaptive_avg_pool2d(student, size)
    if tuple(teacher.shape[2:]) != size:
        teacher = F.adaptive_avg_pool2d(teacher, size)
    return student, teacher
