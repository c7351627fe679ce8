# RKD: distance (25) and angle (50) relations of the pooled embeddings,
# weight 1 (RepDistiller).
rkd = dict(
    loss=dict(type='RKDLoss', distance_weight=25.0, angle_weight=50.0),
    inputs='pooled',
    loss_weight=1.0)
