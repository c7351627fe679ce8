# COCO detection with the ReviewKD authors' detectron2 schedule: 4 GPUs x 2
# images = batch 8, SGD lr 0.01 (momentum 0.9, wd 1e-4), 180k iterations,
# x0.1 at 120k and 160k, linear warm-up over 1000 iterations, multi-scale
# training (shorter side one of 640, 672, ..., 800, longer side <= 1333),
# single-scale test at 800. This is the image budget of mmdet's "1x"
# (8 x 180k = 16 x 90k, about 12 epochs), not "2x".
# Data, pipelines (pillow decoding and resizing as detectron2), batch 2 per
# GPU, warm-up and optimizer come from mmdet's own 90k iteration config;
# only the LR, the iteration counts and the LR scaling base change.
# On other GPU counts: --auto-scale-lr scales lr by total batch / 8.
_base_ = 'mmdet::common/ms-90k_coco.py'

max_iter = 180000
train_cfg = dict(max_iters=max_iter, val_interval=20000)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iter,
        by_epoch=False,
        milestones=[120000, 160000],
        gamma=0.1)
]
optim_wrapper = dict(optimizer=dict(lr=0.01))
auto_scale_lr = dict(base_batch_size=8)
default_hooks = dict(checkpoint=dict(interval=20000))
