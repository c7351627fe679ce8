# Table 7, RM + RLF + ABF: attention based fusion, plain L2 per level.
_base_ = ['../reviewkd/cifar100/reviewkd_wrn40-2_wrn16-2_8xb16-240e_cifar100.py']

model = dict(distill_loss=dict(pool_sizes=()))
