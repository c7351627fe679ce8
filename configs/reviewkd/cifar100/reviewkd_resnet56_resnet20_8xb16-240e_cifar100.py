# ReviewKD on CIFAR-100: teacher resnet56 -> student resnet20 (spec §6).
# Student data, schedule and runtime come from the student's baseline config.
_base_ = [
    '../../baselines/cifar100/resnet20_8xb16-240e_cifar100.py',
    '../../_base_/reviewkd_runtime.py',
]

# Train the teacher with configs/baselines/cifar100/resnet56_8xb16-240e_cifar100.py
# (use its last checkpoint) or convert the public RepDistiller/mdistiller
# teacher with tools/model_converters/repdistiller_to_mmreviewkd.py.
teacher_ckpt = 'checkpoints/cifar100/resnet56_8xb16-240e_cifar100.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='{{fileDirname}}/../../baselines/cifar100/'
        'resnet56_8xb16-240e_cifar100.py'),
    teacher_ckpt=teacher_ckpt,
    connector=dict(type='ABFConnector'),  # mid = min(512, deepest student C)
    distill_loss=dict(type='HCLLoss'),
    loss_weight=0.6,
    warmup_epochs=20,
    # original recipe: post-activation student, pre-activation teacher
    student_feats=dict(preact=False),
    teacher_feats=dict(preact=True),
    infer_input_shape=(3, 32, 32))
