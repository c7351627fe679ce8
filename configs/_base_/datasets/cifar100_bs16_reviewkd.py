# CIFAR-100 as in the CRD/ReviewKD recipe: random crop 32 pad 4 + horizontal
# flip; mean (125.3, 123.0, 113.9), std (63.0, 62.1, 66.7). 8 GPUs x 16
# images = the original batch of 128 (use --auto-scale-lr or
# train_dataloader.batch_size=128 on one GPU).
_base_ = ['mmpretrain::_base_/datasets/cifar100_bs16.py']

dataset_type = 'mmreviewkd.CIFAR100'
data_root = 'data/cifar100'
data_preprocessor = dict(mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7])

# Exact resume: workers are started each epoch and seeded from the main
# process's RNG (new augmentation every epoch; the RNG is stored in the
# checkpoints, so a resumed run draws what an uninterrupted one would).
# See mmreviewkd/datasets/worker_init.py.
# A last incomplete batch is dropped: a batch of one sample cannot be
# batch-normalised at the pooled level (the distiller would skip its
# distillation term).
train_dataloader = dict(
    drop_last=True,
    persistent_workers=False,
    worker_init_fn=dict(type='mmreviewkd.seed_worker_from_torch'),
    dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(
    batch_size=64,
    persistent_workers=False,
    dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = val_dataloader
