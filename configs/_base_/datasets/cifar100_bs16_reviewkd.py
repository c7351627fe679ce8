# CIFAR-100 as in the CRD/ReviewKD recipe: random crop 32 pad 4 + horizontal
# flip; mean (125.3, 123.0, 113.9), std (63.0, 62.1, 66.7). 8 GPUs x 16
# images = the original batch of 128 (use --auto-scale-lr or
# train_dataloader.batch_size=128 on one GPU).
_base_ = ['mmpretrain::_base_/datasets/cifar100_bs16.py']

dataset_type = 'mmreviewkd.CIFAR100'
data_root = 'data/cifar100'
data_preprocessor = dict(mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7])

train_dataloader = dict(
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(
    batch_size=64,
    persistent_workers=True,
    dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
