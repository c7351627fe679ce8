# Quickstart ReviewKD: resnet32 teacher (trained by the quickstart) ->
# resnet8 student, with the CIFAR recipe's features, ABFs and HCL. The
# teacher checkpoint is passed on the command line by tools/quickstart.py:
#   --cfg-options model.teacher_ckpt=work_dirs/quickstart/teacher/epoch_20.pth
_base_ = ['./resnet8_1xb64-20e_digits.py']

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(cfg_path='{{fileDirname}}/resnet32_1xb64-20e_digits.py'),
    teacher_ckpt='work_dirs/quickstart/teacher/epoch_20.pth',
    loss_weight=1.0,
    # the 240-epoch recipe warms up over 20 epochs; 2 of 20 here
    warmup_epochs=2,
    teacher_feats=dict(preact=True))
