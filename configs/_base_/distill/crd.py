# CRD: contrastive representation distillation on the pooled embeddings:
# 128-d embeddings, 16384 negatives from a memory bank over the training set
# (50000 CIFAR-100 images; set num_data to your train set's size),
# temperature 0.07, momentum 0.5, weight 0.8 (RepDistiller).
crd = dict(
    loss=dict(
        type='CRDLoss',
        num_data=50000,
        feat_dim=128,
        num_negatives=16384,
        tau=0.07,
        momentum=0.5),
    inputs='pooled',
    loss_weight=0.8)
