# Table 7, RM + RLF + HCL: fusion by plain sum, hierarchical context loss.
_base_ = ['../reviewkd/cifar100/reviewkd_wrn40-2_wrn16-2_8xb16-240e_cifar100.py']

model = dict(connector=dict(fusion='sum'))
