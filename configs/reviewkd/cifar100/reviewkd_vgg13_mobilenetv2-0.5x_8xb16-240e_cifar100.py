# ReviewKD on CIFAR-100: teacher vgg13-bn -> student mobilenetv2-0.5x. Data,
# schedule and runtime come from the student's baseline config.
_base_ = ['../../baselines/cifar100/mobilenetv2-0.5x_8xb16-240e_cifar100.py']

# lambda is not published for this pair (the authors' code has no
# VGG/MobileNetV2); 5.0 follows the other CIFAR pairs: tune it.

# teacher: its baseline's last checkpoint, or the public RepDistiller file
# converted with tools/model_converters/repdistiller_to_mmreviewkd.py
teacher_ckpt = 'checkpoints/cifar100/vgg13-bn_8xb16-240e_cifar100.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='{{fileDirname}}/../../baselines/cifar100/'
        'vgg13-bn_8xb16-240e_cifar100.py'),
    teacher_ckpt=teacher_ckpt,
    loss_weight=5.0,
    warmup_epochs=20,
    # the authors' recipe: pre-activation teacher stages (post-activation
    # student stages, the default)
    teacher_feats=dict(preact=True))

optim_wrapper = dict(optimizer=dict(lr=0.01))
