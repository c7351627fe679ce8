# ReviewKD on ImageNet: ResNet34 -> ResNet18.
# Paper: ResNet18 69.75 -> 71.61 top-1 (teacher 73.31).
#
# The student, data pipeline, 100-epoch schedule (SGD lr 0.1, wd 1e-4,
# x0.1 at 30/60/90, batch 8 x 32 = 256) and runtime are mmpretrain's own
# resnet18_8xb32_in1k config. Data goes in data/imagenet (mmpretrain layout).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']

# The mmpretrain model-zoo teacher (73.62 top-1), downloaded by the user:
# https://download.openmmlab.com/mmclassification/v0/resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth
teacher_ckpt = 'checkpoints/resnet34_8xb32_in1k_20210831-f257d4e6.pth'

# 4 stages + pooled: 64, 128, 256, 512, 512 on both sides, ABF mid 512;
# post-ReLU stage outputs on both sides; no warm-up on ImageNet
model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(cfg_path='mmpretrain::resnet/resnet34_8xb32_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    loss_weight=1.0,
    infer_input_shape=(3, 224, 224))

# Exact resume (README, "Interruption and resume"): workers seeded each epoch
# from the main process's RNG, which the checkpoints store.
# A last incomplete batch is dropped: a batch of one sample cannot be
# batch-normalised at the pooled level (the distiller would skip its
# distillation term).
train_dataloader = dict(
    drop_last=True,
    persistent_workers=False,
    worker_init_fn=dict(type='mmreviewkd.seed_worker_from_torch'))
