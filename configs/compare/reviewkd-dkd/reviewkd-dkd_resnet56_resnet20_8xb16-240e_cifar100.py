# ReviewKD (ABF + HCL) plus DKD on the logits.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py',
    '../../_base_/distill/dkd.py'
]

model = dict(distill_terms=dict(dkd={{_base_.dkd}}))
