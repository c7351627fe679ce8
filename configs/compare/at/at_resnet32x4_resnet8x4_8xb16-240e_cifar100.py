# AT (attention transfer on every stage) instead of ReviewKD; post-activation features.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet32x4_resnet8x4_8xb16-240e_cifar100.py',
    '../../_base_/distill/at.py'
]

model = dict(
    connector=None,
    student_feats=dict(preact=False),
    teacher_feats=dict(preact=False),
    distill_terms=dict(at={{_base_.at}}))
