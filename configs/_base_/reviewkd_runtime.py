# Added to every ReviewKD config: evaluate the teacher once before training
# (a wrong teacher checkpoint shows up on minute one) and write a
# student-only checkpoint (work_dir/student_final.pth) when training ends.
custom_hooks = [
    dict(type='mmreviewkd.TeacherEvalHook', enabled=True),
    dict(type='mmreviewkd.StudentExportHook'),
]
