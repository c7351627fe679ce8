# Table 6 of the paper: the review matrix on CIFAR-100, resnet56 -> resnet20.
# Student stage i (rows) distilled against teacher stage j (columns) only,
# 16 runs of one base config. Run and tabulate:
#   python tools/analysis/results_table.py configs/ablations/plans/table6.py \
#       --work-dir work_dirs/table6 --seeds 0 1 2 --run
# then draw it:
#   python tools/analysis/plot_review_matrix.py work_dirs/table6/results.json
title = 'Review matrix (Table 6), resnet56 -> resnet20, CIFAR-100'
CONFIG = ('configs/ablations/'
          'table6-review-matrix_resnet56_resnet20_8xb16-240e_cifar100.py')
# top-1 of the paper, rows student stage 1-4, columns teacher stage 1-4
PAPER = [[69.5, 69.0, 68.2, 66.3], [69.6, 69.6, 61.4, 61.1],
         [69.2, 69.8, 71.0, 50.4], [69.2, 69.3, 70.3, 70.3]]

baseline = dict(
    name='resnet20 (no distillation)',
    config='configs/baselines/cifar100/resnet20_8xb16-240e_cifar100.py',
    paper=69.1)
rows = [
    dict(
        name=f'student {i + 1} <- teacher {j + 1}',
        config=CONFIG,
        cfg_options={'model.connector.pairs': [(i, j)]},
        paper=PAPER[i][j],
        matrix=(i + 1, j + 1)) for i in range(4) for j in range(4)
]
