# Copyright (c) mmreviewkd contributors. All rights reserved.
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .student_export_hook import StudentExportHook
from .teacher_eval_hook import TeacherEvalHook

__all__ = [
    'NonFiniteLossError', 'NonFiniteLossHook', 'StudentExportHook',
    'TeacherEvalHook'
]
