# AT: attention transfer (p = 2) on every stage, weight 1000 (RepDistiller).
at = dict(loss=dict(type='ATLoss', p=2), inputs='stages', loss_weight=1000.0)
