# CRD (pooled embedding) instead of ReviewKD.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py',
    '../../_base_/distill/crd.py'
]

model = dict(
    connector=None,
    student_feats=dict(preact=False),
    teacher_feats=dict(preact=False),
    distill_terms=dict(crd={{_base_.crd}}))
