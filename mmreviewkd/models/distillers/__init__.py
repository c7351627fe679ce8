# Copyright (c) mmreviewkd contributors. All rights reserved.
from .feature_tap import FeatureTap, resolve_feature_points
from .review_kd import (ReviewKDDistiller, build_model_from_ref,
                        load_teacher_checkpoint)

__all__ = [
    'ReviewKDDistiller', 'FeatureTap', 'resolve_feature_points',
    'build_model_from_ref', 'load_teacher_checkpoint'
]
