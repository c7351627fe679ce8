# OFD (every stage) instead of ReviewKD; pre-activation features on both sides.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet32x4_resnet8x4_8xb16-240e_cifar100.py',
    '../../_base_/distill/ofd.py'
]

model = dict(
    connector=None,
    student_feats=dict(preact=True),
    teacher_feats=dict(preact=True),
    distill_terms=dict(ofd={{_base_.ofd}}))
