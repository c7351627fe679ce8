# ReviewKD on CIFAR-100: teacher resnet32x4 -> student resnet8x4. Data,
# schedule and runtime come from the student's baseline config.
_base_ = ['../../baselines/cifar100/resnet8x4_8xb16-240e_cifar100.py']

# teacher: its baseline's last checkpoint, or the public RepDistiller file
# converted with tools/model_converters/repdistiller_to_mmreviewkd.py
teacher_ckpt = 'checkpoints/cifar100/resnet32x4_8xb16-240e_cifar100.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='{{fileDirname}}/../../baselines/cifar100/'
        'resnet32x4_8xb16-240e_cifar100.py'),
    teacher_ckpt=teacher_ckpt,
    loss_weight=5.0,
    warmup_epochs=20,
    # the authors' recipe: pre-activation teacher stages (post-activation
    # student stages, the default)
    teacher_feats=dict(preact=True))
