# RKD (pooled embedding) instead of ReviewKD.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet32x4_resnet8x4_8xb16-240e_cifar100.py',
    '../../_base_/distill/rkd.py'
]

model = dict(
    connector=None,
    student_feats=dict(preact=False),
    teacher_feats=dict(preact=False),
    distill_terms=dict(rkd={{_base_.rkd}}))
