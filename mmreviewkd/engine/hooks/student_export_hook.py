# Copyright (c) mmreviewkd contributors. All rights reserved.
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

from mmreviewkd.models.utils import export_student
from mmreviewkd.registry import HOOKS
from mmreviewkd.utils.checkpoint_io import ATOMIC_BACKEND_ARGS


@HOOKS.register_module()
class StudentExportHook(Hook):
    """Write a student-only checkpoint when training ends.

    The file holds only the student's weights (no teacher, no connector, no
    optimizer) under the student's own key names, so it loads into the
    student's plain mmpretrain/mmdet config (``tools/test.py STUDENT_CONFIG
    work_dir/student_final.pth``). Use
    ``tools/model_converters/extract_student.py`` for other checkpoints (e.g.
    the best one). With an EMA hook (``DistillerEMAHook``) the averaged
    student is exported, as the runner's checkpoints hold it.

    Args:
        filename (str): File name inside the work dir.
            Defaults to 'student_final.pth'.
    """

    priority = 'VERY_LOW'

    def __init__(self, filename: str = 'student_final.pth') -> None:
        self.filename = filename

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'student'):
            runner.logger.warning('StudentExportHook: the model has no '
                                  '`student`; nothing exported.')
            return
        if not is_main_process():
            return
        meta = dict(epoch=runner.epoch, iter=runner.iter)
        dataset_meta = getattr(model.student, 'dataset_meta', None) or \
            runner.message_hub.get_info('dataset_meta', None)
        if dataset_meta is not None:
            meta['dataset_meta'] = dataset_meta
        state = dict(state_dict=model.state_dict())
        for hook in runner.hooks:
            if isinstance(hook, EMAHook) and hasattr(hook, 'ema_model'):
                # the averaged weights, the way EMAHook puts them into every
                # checkpoint's state_dict
                hook.before_save_checkpoint(runner, state)
        ckpt = export_student(
            dict(state_dict=weights_to_cpu(state['state_dict'])), meta=meta)
        path = osp.join(runner.work_dir, self.filename)
        # atomic: a kill during the save never leaves a truncated file
        save_checkpoint(ckpt, path, backend_args=dict(ATOMIC_BACKEND_ARGS))
        runner.logger.info(f'Student-only checkpoint saved to {path}')
