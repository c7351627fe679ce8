# Copyright (c) mmreviewkd contributors. All rights reserved.
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .rng_state_hook import RNGStateHook, capture_rng_state, restore_rng_state
from .student_export_hook import StudentExportHook
from .teacher_eval_hook import TeacherEvalHook

__all__ = [
    'NonFiniteLossError', 'NonFiniteLossHook', 'RNGStateHook',
    'StudentExportHook', 'TeacherEvalHook', 'capture_rng_state',
    'restore_rng_state'
]
