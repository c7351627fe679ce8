# ReviewKD on CIFAR-100: teacher resnet50 -> student mobilenetv2-0.5x. Data,
# schedule and runtime come from the student's baseline config.
_base_ = ['../../baselines/cifar100/mobilenetv2-0.5x_8xb16-240e_cifar100.py']

# lambda is not published for this pair; one public reproduction needed
# 30: tune it. mmpretrain's ResNet_CIFAR has no pre-activation outputs,
# so the teacher gives post-ReLU stage features here (a deviation).

# teacher: its baseline's last checkpoint, or the public RepDistiller file
# converted with tools/model_converters/repdistiller_to_mmreviewkd.py
teacher_ckpt = 'checkpoints/cifar100/resnet50_8xb16-240e_cifar100.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='{{fileDirname}}/../../baselines/cifar100/'
        'resnet50_8xb16-240e_cifar100.py'),
    teacher_ckpt=teacher_ckpt,
    loss_weight=5.0,
    warmup_epochs=20)
