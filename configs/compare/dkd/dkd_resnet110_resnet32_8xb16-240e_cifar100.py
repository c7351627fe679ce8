# DKD (logits) instead of ReviewKD.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet110_resnet32_8xb16-240e_cifar100.py',
    '../../_base_/distill/dkd.py'
]

model = dict(connector=None, distill_terms=dict(dkd={{_base_.dkd}}))
