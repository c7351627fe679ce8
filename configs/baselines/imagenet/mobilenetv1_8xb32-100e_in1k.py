# ImageNet MobileNetV1 (width 1.0), the student of the ReviewKD
# ResNet50 -> MobileNet pair, trained alone with the same
# 100-epoch schedule: the baseline ReviewKD is compared against (paper 68.87).
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.MobileNetV1'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))

# Exact resume (README, "Interruption and resume"): workers seeded each epoch
# from the main process's RNG, which the checkpoints store.
# A last incomplete batch is dropped: a batch of one sample cannot be
# batch-normalised at the pooled level (the distiller would skip its
# distillation term).
train_dataloader = dict(
    drop_last=True,
    persistent_workers=False,
    worker_init_fn=dict(type='mmreviewkd.seed_worker_from_torch'))
