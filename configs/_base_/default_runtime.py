# mmpretrain's runtime for the CIFAR-100 recipe: a checkpoint every 10
# epochs (3 kept); the last epoch's weights are what we report (no
# best-on-test selection).
_base_ = 'mmpretrain::_base_/default_runtime.py'

default_hooks = dict(
    checkpoint=dict(interval=10, max_keep_ckpts=3), logger=dict(interval=50))
