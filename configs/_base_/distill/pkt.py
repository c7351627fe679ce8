# PKT: probabilistic knowledge transfer on the pooled embedding, weight 30000
# (RepDistiller).
pkt = dict(loss=dict(type='PKTLoss'), inputs='pooled', loss_weight=30000.0)
