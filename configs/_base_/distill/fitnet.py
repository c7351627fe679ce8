# FitNet: a conv regressor maps the student's second stage onto the
# teacher's (the "hint"), L2, weight 100 (RepDistiller, hint_layer=2).
fitnet = dict(
    connector=dict(type='FitNetRegressor'),
    loss=dict(type='FitNetLoss'),
    inputs='stages.1',
    loss_weight=100.0)
