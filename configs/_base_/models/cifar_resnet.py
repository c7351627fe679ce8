# CRD/RepDistiller CIFAR ResNet (resnet8 ... resnet110: 16, 32, 64 channels;
# resnet8x4 / resnet32x4: stem 32, base 64, head 256), CIFAR-100 head.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmreviewkd.CifarResNet'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
