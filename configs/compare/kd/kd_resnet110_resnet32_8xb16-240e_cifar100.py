# KD (logits) instead of ReviewKD.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet110_resnet32_8xb16-240e_cifar100.py',
    '../../_base_/distill/kd.py'
]

model = dict(
    connector=None,
    task_loss_weight={{_base_.kd_task_loss_weight}},
    distill_terms=dict(kd={{_base_.kd}}))
