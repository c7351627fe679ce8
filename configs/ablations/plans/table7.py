# Table 7 of the paper: the parts of ReviewKD on CIFAR-100, WRN40-2 ->
# WRN16-2 (teacher 75.61). Run and tabulate:
#   python tools/analysis/results_table.py configs/ablations/plans/table7.py \
#       --work-dir work_dirs/table7 --seeds 0 1 2 --run
title = 'ReviewKD ablation (Table 7), WRN40-2 -> WRN16-2, CIFAR-100'
_DIR = 'configs/ablations/'
_PAIR = '_wrn40-2_wrn16-2_8xb16-240e_cifar100.py'

rows = [
    dict(
        name='none',
        config=_DIR + 'table7-none_wrn16-2_8xb16-240e_cifar100.py',
        paper=74.3),
    dict(name='RM', config=_DIR + 'table7-rm' + _PAIR, paper=75.2),
    dict(name='RM + RLF', config=_DIR + 'table7-rm-rlf' + _PAIR, paper=75.6),
    dict(
        name='RM + RLF + ABF',
        config=_DIR + 'table7-rm-rlf-abf' + _PAIR,
        paper=76.0),
    dict(
        name='RM + RLF + HCL',
        config=_DIR + 'table7-rm-rlf-hcl' + _PAIR,
        paper=75.8),
    dict(
        name='RM + RLF + ABF + HCL',
        config=_DIR + 'table7-rm-rlf-abf-hcl' + _PAIR,
        paper=76.2),
]
baseline = 'none'
