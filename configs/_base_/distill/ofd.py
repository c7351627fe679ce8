# OFD: 1x1 conv + BN connectors, partial L2 against the teacher's pre-ReLU
# stages clipped at a margin from its BN statistics, weight 0.001
# (mdistiller). Needs pre-activation features on both sides.
ofd = dict(
    connector=dict(type='OFDConnector'),
    loss=dict(type='OFDLoss'),
    inputs='stages',
    loss_weight=0.001)
