# CRD/RepDistiller ShuffleNetV2 (1x), CIFAR-100 head.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.CifarShuffleNetV2', net_size=1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=1024,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
