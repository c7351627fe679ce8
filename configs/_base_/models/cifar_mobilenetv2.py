# CRD/RepDistiller MobileNetV2 x0.5 ("half"), CIFAR-100 head.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.CifarMobileNetV2', widen_factor=0.5),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
