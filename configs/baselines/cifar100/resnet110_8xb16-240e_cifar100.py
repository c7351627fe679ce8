# CIFAR-100 resnet110 of CRD/RepDistiller trained alone with the CRD/ReviewKD
# recipe (240 epochs, batch 128): a teacher, or a student's baseline.
_base_ = [
    '../../_base_/models/cifar_resnet.py',
    '../../_base_/datasets/cifar100_bs16_reviewkd.py',
    '../../_base_/schedules/cifar100_bs128_240e.py',
    '../../_base_/default_runtime.py',
]

model = dict(backbone=dict(depth=110))
