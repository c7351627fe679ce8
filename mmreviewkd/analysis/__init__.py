# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Results tables and pictures: seeds table, training curves, review
matrix heat map, ABF attention maps (library of ``tools/analysis/``)."""
from .abf_maps import compute_abf_maps, visualize_abf
from .curves import plot_curves
from .logs import RunLog, latest_run_log, resolve_log
from .results import collect, load_plan, to_markdown, train_missing
from .review_matrix import plot_review_matrix

__all__ = [
    'RunLog', 'latest_run_log', 'resolve_log', 'load_plan', 'collect',
    'to_markdown', 'train_missing', 'plot_curves', 'plot_review_matrix',
    'compute_abf_maps', 'visualize_abf'
]
