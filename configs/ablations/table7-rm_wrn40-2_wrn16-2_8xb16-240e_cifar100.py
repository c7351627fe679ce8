# Table 7, RM: the review mechanism alone. Every student level i is
# distilled against every teacher level j <= i by its own adapter (no
# residual chain, no fusion), plain L2 per pair (HCL without pooling).
_base_ = ['../reviewkd/cifar100/reviewkd_wrn40-2_wrn16-2_8xb16-240e_cifar100.py']

model = dict(
    connector=dict(type='ReviewPairsConnector', pairs='review'),
    distill_loss=dict(pool_sizes=()))
