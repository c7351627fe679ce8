# Added to every ReviewKD config: evaluate the teacher once before training
# (a wrong teacher checkpoint shows up on minute one), stop with a clear
# message when a loss becomes NaN/inf (NonFiniteLossHook(action='skip') skips
# such steps instead), write a student-only checkpoint
# (work_dir/student_final.pth) when training ends, and keep the RNG states in
# checkpoints so a resumed run augments its data like an uninterrupted one.
custom_hooks = [
    dict(type='mmreviewkd.TeacherEvalHook', enabled=True),
    dict(type='mmreviewkd.NonFiniteLossHook', action='stop'),
    dict(type='mmreviewkd.StudentExportHook'),
    dict(type='mmreviewkd.RNGStateHook'),
]
# Atomic checkpoint writes (temporary file, fsync, rename) are a storage
# backend of CheckpointHook. `default_hooks` cannot be set here (the
# student's runtime base defines it, and bases must not share keys):
# tools/train.py selects the backend for every config whose checkpoint hook
# has no backend_args, or write in the config itself
#   default_hooks = dict(checkpoint=dict(
#       backend_args=dict(backend='mmreviewkd_atomic_local')))
