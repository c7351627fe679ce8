# Table 7, RM + RLF: the residual chain, fusing by a plain sum of the resized
# deeper residual (no attention), plain L2 per level.
_base_ = ['../reviewkd/cifar100/reviewkd_wrn40-2_wrn16-2_8xb16-240e_cifar100.py']

model = dict(connector=dict(fusion='sum'), distill_loss=dict(pool_sizes=()))
