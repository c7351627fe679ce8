# CRD/RepDistiller wide ResNet WRN-depth-k (64 * k channels at the end),
# CIFAR-100 head.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.CifarWRN'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
