# Copyright (c) mmreviewkd contributors. All rights reserved.
import os
import os.path as osp
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmreviewkd.registry import HOOKS


@HOOKS.register_module()
class RankStateDumpHook(Hook):
    """Test helper: every rank writes what a distributed test checks to
    ``out_dir/rank<rank>.pth`` when training ends.

    Recorded: rank, world size and backend; the model wrapper, its
    ``find_unused_parameters`` and the number / bytes of the parameter
    tensors DDP's reducer synchronises (from DDP's own logging data); the
    trainable parameters and the teacher's ``requires_grad`` / train-mode
    flags; the number of checkpoint saves this rank performed
    (``before_save_checkpoint`` runs inside the main-process-only save); the
    ``distill_weight`` of every iteration; and the final parameters of
    everything but the teacher.

    Args:
        out_dir (str): Where the files go (created).
    """

    priority = 'LOWEST'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.record: dict = dict(saves=0, distill_weights=[])

    @staticmethod
    def _unwrap(runner):
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def before_train(self, runner) -> None:
        model = self._unwrap(runner)
        rec = self.record
        rec['rank'] = runner.rank
        rec['world_size'] = runner.world_size
        rec['backend'] = torch_dist.get_backend() if \
            torch_dist.is_initialized() else None
        rec['wrapper'] = type(runner.model).__name__
        if isinstance(runner.model, torch.nn.parallel.DistributedDataParallel):
            data = runner.model._get_ddp_logging_data()
            rec['find_unused_parameters'] = bool(
                runner.model.find_unused_parameters)
            rec['ddp_num_parameter_tensors'] = int(
                data['num_parameter_tensors'])
            rec['ddp_parameter_bytes'] = int(
                data['total_parameter_size_bytes'])
        trainable = [p for p in model.parameters() if p.requires_grad]
        rec['trainable_tensors'] = len(trainable)
        rec['trainable_bytes'] = sum(p.numel() * p.element_size()
                                     for p in trainable)
        teacher = getattr(model, 'teacher', None)
        if teacher is not None:
            rec['teacher_tensors'] = len(list(teacher.parameters()))
            rec['teacher_requires_grad'] = any(p.requires_grad
                                               for p in teacher.parameters())

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if outputs and 'distill_weight' in outputs:
            self.record['distill_weights'].append(
                (runner.epoch, float(outputs['distill_weight'])))
        teacher = getattr(self._unwrap(runner), 'teacher', None)
        if teacher is not None:
            self.record['teacher_ever_training'] = self.record.get(
                'teacher_ever_training', False) or any(
                    m.training for m in teacher.modules())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.record['saves'] += 1

    def after_train(self, runner) -> None:
        model = self._unwrap(runner)
        self.record['params'] = {
            name: p.detach().cpu().clone()
            for name, p in model.named_parameters()
            if not name.startswith('teacher.')
        }
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save(self.record, osp.join(self.out_dir,
                                         f'rank{runner.rank}.pth'))
