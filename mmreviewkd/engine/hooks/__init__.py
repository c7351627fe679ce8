# Copyright (c) mmreviewkd contributors. All rights reserved.
from .student_export_hook import StudentExportHook
from .teacher_eval_hook import TeacherEvalHook

__all__ = ['StudentExportHook', 'TeacherEvalHook']
