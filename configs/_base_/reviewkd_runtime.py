# Added to every ReviewKD config: evaluate the teacher once before training
# (a wrong teacher checkpoint shows up on minute one), stop with a clear
# message when a loss becomes NaN/inf (NonFiniteLossHook(action='skip') skips
# such steps instead) and write a student-only checkpoint
# (work_dir/student_final.pth) when training ends.
custom_hooks = [
    dict(type='mmreviewkd.TeacherEvalHook', enabled=True),
    dict(type='mmreviewkd.NonFiniteLossHook', action='stop'),
    dict(type='mmreviewkd.StudentExportHook'),
]

# Atomic checkpoint writes, resume from the last complete checkpoint, RNG
# states in checkpoints, distributed runs on CPU (gloo). tools/train.py and
# tools/test.py use it for configs without a runner_type, too.
runner_type = 'mmreviewkd.ReviewKDRunner'
