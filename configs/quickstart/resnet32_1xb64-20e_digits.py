# Quickstart teacher: the CIFAR resnet32 on the quickstart dataset (CPU,
# minutes). The dataset is scikit-learn's bundled 8x8 handwritten digits
# (1797 real images, 10 classes) rendered to 32x32 RGB and written in the
# CIFAR python-pickle format by tools/quickstart.py (no download needed);
# the CIFAR pipeline (random crop with padding, flip) is reused.
_base_ = ['../baselines/cifar100/resnet32_8xb16-240e_cifar100.py']

model = dict(head=dict(num_classes=10))

data_root = 'work_dirs/quickstart/data'
digits_metainfo = dict(classes=[str(i) for i in range(10)])
data_preprocessor = dict(
    num_classes=10, mean=[127.5] * 3, std=[127.5] * 3, to_rgb=False)
train_dataloader = dict(
    batch_size=64,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, verify_md5=False, metainfo=digits_metainfo))
val_dataloader = dict(
    batch_size=256,
    num_workers=1,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, verify_md5=False, metainfo=digits_metainfo))
test_dataloader = val_dataloader

max_epochs = 20
optim_wrapper = dict(optimizer=dict(lr=0.1))
param_scheduler = dict(
    _delete_=True,
    type='CosineAnnealingLR',
    by_epoch=True,
    T_max=max_epochs,
    convert_to_iter_based=True)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
    logger=dict(interval=10))
randomness = dict(seed=0)
