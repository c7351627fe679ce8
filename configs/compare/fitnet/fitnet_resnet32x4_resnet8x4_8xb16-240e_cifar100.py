# FitNet (hint at the second stage) instead of ReviewKD; post-activation features on both sides.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_resnet32x4_resnet8x4_8xb16-240e_cifar100.py',
    '../../_base_/distill/fitnet.py'
]

model = dict(
    connector=None,
    student_feats=dict(preact=False),
    teacher_feats=dict(preact=False),
    distill_terms=dict(fitnet={{_base_.fitnet}}))
