# CIFAR-100 ShuffleNetV2 (1x) of CRD/RepDistiller trained alone with the
# CRD/ReviewKD recipe (240 epochs, batch 128): a student's baseline.
_base_ = [
    '../../_base_/models/cifar_shufflenetv2.py',
    '../../_base_/datasets/cifar100_bs16_reviewkd.py',
    '../../_base_/schedules/cifar100_bs128_240e.py',
    '../../_base_/default_runtime.py',
]

# ShuffleNet / MobileNet students use lr 0.02 in the CRD/ReviewKD recipe
optim_wrapper = dict(optimizer=dict(lr=0.02))
