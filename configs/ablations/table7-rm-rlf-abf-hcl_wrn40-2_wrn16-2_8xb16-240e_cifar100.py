# Table 7, all four parts: ReviewKD as published (76.2 in the paper).
_base_ = ['../reviewkd/cifar100/reviewkd_wrn40-2_wrn16-2_8xb16-240e_cifar100.py']
