# CIFAR-100 wrn40-1 of CRD/RepDistiller, trained from scratch with the
# CRD/ReviewKD recipe (240 epochs, batch 128). Used as a teacher, or as the
# student baseline that ReviewKD is compared against.
_base_ = [
    '../../_base_/datasets/cifar100_bs16_reviewkd.py',
    '../../_base_/schedules/cifar100_bs128_240e.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.CifarWRN', depth=40, widen_factor=1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

# last-epoch weights are what we report (no best-on-test selection)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3),
    logger=dict(type='LoggerHook', interval=50))
