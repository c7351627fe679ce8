# Copyright (c) mmreviewkd contributors. All rights reserved.
from .distill_grad_ratio_hook import DistillGradRatioHook
from .distiller_ema_hook import DistilledPart, DistillerEMAHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .progress_log_hook import ParamInitLogHook, ProgressLogHook
from .rng_state_hook import RNGStateHook, capture_rng_state, restore_rng_state
from .student_export_hook import StudentExportHook
from .teacher_eval_hook import TeacherEvalHook
from .worker_seed_hook import WorkerSeedHook

__all__ = [
    'DistillGradRatioHook', 'DistilledPart', 'DistillerEMAHook',
    'NonFiniteLossError', 'NonFiniteLossHook', 'ParamInitLogHook',
    'ProgressLogHook', 'RNGStateHook', 'StudentExportHook', 'TeacherEvalHook',
    'WorkerSeedHook', 'capture_rng_state', 'restore_rng_state'
]
