# CRD/RepDistiller ShuffleNetV1 (groups 3), CIFAR-100 head.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.CifarShuffleNetV1', groups=3),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=960,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
