# Table 6, one cell of the review matrix: one student stage distilled against
# one teacher stage by a plain adapter and L2, no fusion. Stages 1-4 are
# levels 0-3 (level 3 = the pooled embedding); choose the cell with
#   --cfg-options "model.connector.pairs=[(i-1, j-1)]"
# (plans/table6.py runs all 16).
_base_ = ['../reviewkd/cifar100/reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py']

model = dict(
    connector=dict(type='ReviewPairsConnector', pairs=[(2, 2)]),
    distill_loss=dict(pool_sizes=()))
