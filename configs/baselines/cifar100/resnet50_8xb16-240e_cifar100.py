# CIFAR-100 ResNet50 of CRD/RepDistiller (mmpretrain's ResNet_CIFAR: 3x3
# stem, no max-pool) trained alone with the CRD/ReviewKD recipe (240 epochs,
# batch 128): a teacher, or a student's baseline.
_base_ = [
    'mmpretrain::_base_/models/resnet50_cifar.py',
    '../../_base_/datasets/cifar100_bs16_reviewkd.py',
    '../../_base_/schedules/cifar100_bs128_240e.py',
    '../../_base_/default_runtime.py',
]

model = dict(head=dict(num_classes=100))
