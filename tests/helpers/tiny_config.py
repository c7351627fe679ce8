# Copyright (c) mmreviewkd contributors. All rights reserved.
"""A tiny ReviewKD config (CIFAR resnet14 -> resnet8 on a fake CIFAR) for
end-to-end tests of the runtime. Like every shipped ReviewKD config it names
no distillation hooks: loading it (``load_config``, hence ``tools/train.py``
and ``tools/test.py``) appends the hooks of
:data:`mmreviewkd.utils.distill_runtime.DISTILL_HOOKS` to its
``custom_hooks``, so the hooks every ReviewKD config gets are what runs. It
imports the test-only hooks and loss of ``tests/helpers`` (kill, NaN
injection, per-rank state dump)."""
from typing import Optional, Sequence

_TEMPLATE = '''
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(
    imports=['helpers.kill_hook', 'helpers.nan_loss',
             'helpers.rank_dump_hook'],
    allow_failed_imports=False)

model = dict(
    type='mmreviewkd.ReviewKDDistiller',
    student=dict(
        type='ImageClassifier',
        backbone=dict(type='mmreviewkd.CifarResNet', depth=8),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes={num_classes},
                  in_channels=64, loss=dict(type='CrossEntropyLoss'))),
    teacher=dict(
        type='ImageClassifier',
        backbone=dict(type='mmreviewkd.CifarResNet', depth=14),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes={num_classes},
                  in_channels=64, loss=dict(type='CrossEntropyLoss'))),
    teacher_ckpt={teacher_ckpt!r},
    connector=dict(type='ABFConnector'),
    distill_loss={distill_loss!r},
    loss_weight=1.0,
    warmup_epochs={warmup_epochs},
    student_feats=dict(preact=False),
    teacher_feats=dict(preact=True),
    infer_input_shape=(3, 32, 32))
data_preprocessor = dict(num_classes={num_classes},
                         mean=[125.3, 123.0, 113.9],
                         std=[63.0, 62.1, 66.7], to_rgb=False)

train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='mmreviewkd.CIFAR100', data_root=r'{data_root}',
                 split='train', verify_md5=False, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='mmreviewkd.CIFAR100', data_root=r'{data_root}',
                 split='test', verify_md5=False,
                 pipeline=[dict(type='PackInputs')]))
val_evaluator = dict(type='Accuracy', topk=(1, ))
val_cfg = dict()
test_dataloader = val_dataloader
test_evaluator = val_evaluator
test_cfg = dict()

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4,
                   nesterov=True))
param_scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[2],
                       gamma=0.1, begin=0, end={max_epochs})
train_cfg = dict(by_epoch=True, max_epochs={max_epochs}, val_interval=1)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', interval=1))
# log every iteration's own values (no running mean over 10 iterations)
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
'''

# Distributed training on CPU with MMEngine's Runner: the gloo backend, and
# DDP without device ids (MMEngine passes [LOCAL_RANK], which PyTorch rejects
# for a CPU module; None is also valid for a module on one GPU). The
# launchers additionally need tool_runner.cpu_ddp_env().
CPU_DDP_CFG = """
env_cfg = dict(dist_cfg=dict(backend='gloo'))
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', device_ids=None,
    broadcast_buffers=False, find_unused_parameters=False)
"""


def tiny_distill_config(data_root: str,
                        teacher_ckpt: Optional[str] = None,
                        extra_hooks: Sequence[dict] = (),
                        custom_hooks: Optional[Sequence[dict]] = None,
                        distill_loss: Optional[dict] = None,
                        num_classes: int = 10,
                        batch_size: int = 8,
                        warmup_epochs: int = 1,
                        max_epochs: int = 3,
                        cpu_ddp: bool = False) -> str:
    """The config text (write it to a ``.py`` file).

    Args:
        data_root (str): A folder written by :func:`make_cifar100`.
        teacher_ckpt (str, optional): Teacher weights; None trains against a
            randomly initialised teacher.
        extra_hooks (Sequence[dict]): The config's own ``custom_hooks``
            (the distillation hooks are appended when it is loaded).
        custom_hooks (Sequence[dict], optional): Also written to the
            config's ``custom_hooks``, before ``extra_hooks``; a listed
            distillation hook (e.g. ``NonFiniteLossHook(action='skip')``)
            replaces the default one of its type.
        distill_loss (dict, optional): Defaults to ``dict(type='HCLLoss')``.
        num_classes (int): Classes of the fake dataset.
        batch_size (int): Per-process batch size.
        warmup_epochs (int): ReviewKD warm-up (epoch 0 has factor 0).
        max_epochs (int): Epochs; the LR drops x0.1 after epoch 2.
        cpu_ddp (bool): Add :data:`CPU_DDP_CFG` (distributed runs on CPU).
    """
    text = _TEMPLATE.format(
        data_root=data_root,
        teacher_ckpt=teacher_ckpt,
        distill_loss=distill_loss or dict(type='HCLLoss'),
        num_classes=num_classes,
        batch_size=batch_size,
        warmup_epochs=warmup_epochs,
        max_epochs=max_epochs)
    hooks = [dict(h) for h in custom_hooks or ()]
    hooks += [dict(h) for h in extra_hooks]
    if hooks:
        text += f'\ncustom_hooks = {hooks!r}\n'
    if cpu_ddp:
        text += CPU_DDP_CFG
    return text
