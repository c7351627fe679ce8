# Table 1 of the paper for the two pairs every compared method has configs
# for (CIFAR-100). Run and tabulate:
#   python tools/analysis/results_table.py configs/ablations/plans/table1.py \
#       --work-dir work_dirs/table1 --seeds 0 1 2 --run
title = 'Compared methods (Table 1), CIFAR-100'
_SCHED = '_8xb16-240e_cifar100.py'
# (pair, published top-1 per method; None: not in the paper)
_PAPER = {
    'resnet56_resnet20':
    dict(baseline=69.06, kd=70.66, fitnet=69.21, pkt=70.34, rkd=69.61,
         crd=71.16, at=70.55, vid=70.38, ofd=70.98, reviewkd=71.89),
    'resnet32x4_resnet8x4':
    dict(baseline=72.50, kd=73.33, fitnet=73.50, pkt=73.64, rkd=71.90,
         crd=75.51, at=73.44, vid=73.09, ofd=74.95, reviewkd=75.63),
}
_STUDENT = dict(resnet56_resnet20='resnet20', resnet32x4_resnet8x4='resnet8x4')
_METHODS = ['kd', 'dkd', 'fitnet', 'at', 'pkt', 'rkd', 'vid', 'ofd', 'crd',
            'reviewkd-kd', 'reviewkd-dkd']

rows = []
for pair, paper in _PAPER.items():
    rows.append(
        dict(
            name=f'{pair}: student alone',
            config=f'configs/baselines/cifar100/{_STUDENT[pair]}{_SCHED}',
            paper=paper['baseline']))
    rows.append(
        dict(
            name=f'{pair}: ReviewKD',
            config=f'configs/reviewkd/cifar100/reviewkd_{pair}{_SCHED}',
            paper=paper['reviewkd']))
    rows += [
        dict(
            name=f'{pair}: {method}',
            config=f'configs/compare/{method}/{method}_{pair}{_SCHED}',
            paper=paper.get(method)) for method in _METHODS
    ]
