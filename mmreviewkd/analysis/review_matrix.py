# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The review matrix (the paper's Table 6) as a heat map.

Cell (i, j): top-1 of the student whose stage ``i`` is distilled from the
teacher's stage ``j`` alone (stages 1-based, 4 = pooled), coloured against
the student trained alone with a diverging colour map centred on it: red
below the baseline, blue above.
"""
import json
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.colors import TwoSlopeNorm

from mmreviewkd.utils.errors import ConfigError, DataError

from .figures import new_figure, save_figure

#: Table 6 of the paper, resnet56 -> resnet20 on CIFAR-100: rows student
#: stage 1-4, columns teacher stage 1-4 (4 = pooled)
PAPER_TABLE6 = ((69.5, 69.0, 68.2, 66.3), (69.6, 69.6, 61.4, 61.1),
                (69.2, 69.8, 71.0, 50.4), (69.2, 69.3, 70.3, 70.3))
#: the student trained alone in Table 6
PAPER_BASELINE = 69.1


def paper_matrix() -> np.ndarray:
    """Table 6 as a 4 x 4 array."""
    return np.array(PAPER_TABLE6, dtype=float)


def read_results(path: str) -> dict:
    """The JSON written by ``tools/analysis/results_table.py``."""
    try:
        with open(path) as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f'{path} is not JSON ({e.msg}); give the .json '
                        f'that results_table.py writes next to its '
                        f'Markdown.') from None
    if not isinstance(results, dict) or not isinstance(
            results.get('rows'), list):
        raise DataError(f'{path} has no `rows`; give the .json that '
                        f'results_table.py writes next to its Markdown.')
    return results


def matrix_from_results(
        results: dict,
        source: str = '') -> Tuple[np.ndarray, Optional[float]]:
    """The matrix of the rows with ``matrix=(i, j)`` (their mean; NaN where
    a cell has no value) and the results' baseline (measured mean, else
    its paper number; None without a baseline).

    Raises:
        DataError: No row has a ``matrix`` cell.
    """
    cells = [(tuple(r['matrix']), r.get('mean')) for r in results['rows']
             if r.get('matrix')]
    if not cells:
        raise DataError(
            f'no row of {source or "the results"} has matrix=(i, j); give '
            f'the plan\'s review-matrix rows matrix=(student stage, teacher '
            f'stage).')
    n_rows = max(i for (i, _), _ in cells)
    n_cols = max(j for (_, j), _ in cells)
    matrix = np.full((n_rows, n_cols), np.nan)
    for (i, j), value in cells:
        if value is not None:
            matrix[i - 1, j - 1] = float(value)
    baseline = results.get('baseline') or {}
    value = baseline.get('value', baseline.get('mean'))
    if value is None:
        value = baseline.get('paper')
    return matrix, (float(value) if value is not None else None)


def draw_matrix(ax, matrix: np.ndarray, baseline: float, title: str,
                fig=None) -> None:
    """One heat map on ``ax``: value and difference to ``baseline`` in each
    cell, missing (NaN) cells blank."""
    values = [float(v) for v in matrix[~np.isnan(matrix)]]
    # each side of the baseline spans its own range: small gains stay
    # visible next to large losses
    norm = TwoSlopeNorm(
        vcenter=baseline,
        vmin=min([baseline - 0.1] + values),
        vmax=max([baseline + 0.1] + values))
    masked = np.ma.masked_invalid(matrix)
    cmap = _cmap()
    image = ax.imshow(masked, cmap=cmap, norm=norm)
    n_rows, n_cols = matrix.shape
    for i in range(n_rows):
        for j in range(n_cols):
            v = matrix[i, j]
            if math.isnan(v):
                continue
            rgba = cmap(norm(v))
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(
                j,
                i,
                f'{v:.1f}\n{v - baseline:+.1f}',
                ha='center',
                va='center',
                fontsize=9,
                color='white' if dark else 'black')
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels([str(j + 1) for j in range(n_cols)])
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels([str(i + 1) for i in range(n_rows)])
    ax.set_xlabel('teacher stage')
    ax.set_ylabel('student stage')
    ax.set_title(f'{title}\n(baseline {baseline:.1f}: red below, blue '
                 f'above)', fontsize=10)
    if fig is not None:
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def _cmap():
    import matplotlib
    return matplotlib.colormaps['RdBu'].with_extremes(bad='white')


def plot_review_matrix(results_json: Optional[str] = None,
                       out: str = 'matrix.png',
                       baseline: Optional[float] = None,
                       paper: bool = False,
                       title: Optional[str] = None,
                       vis_backends: Sequence[str] = (),
                       vis_dir: Optional[str] = None) -> str:
    """Draw the review matrix of a results JSON and/or the paper's Table 6.

    Args:
        results_json (str, optional): The results table's JSON.
        out (str): The PNG to write.
        baseline (float, optional): Centre of the colour map for the
            results (default: the JSON's baseline).
        paper (bool): Add a panel with the paper's Table 6 (baseline 69.1).
        title (str, optional): Title of the results panel (default: the
            JSON's title).

    Returns:
        str: ``out``.
    """
    panels: List[Tuple[np.ndarray, float, str]] = []
    if results_json is not None:
        results = read_results(results_json)
        matrix, found = matrix_from_results(results, results_json)
        centre = baseline if baseline is not None else found
        if centre is None:
            raise ConfigError(
                f'{results_json} names no baseline; give --baseline '
                f'(e.g. --baseline 69.1, the student trained alone).')
        panels.append((matrix, float(centre), title or results.get('title')
                       or 'review matrix (ours)'))
    if paper:
        panels.append((paper_matrix(), PAPER_BASELINE,
                       'paper, Table 6 (resnet56 -> resnet20)'))
    if not panels:
        raise ConfigError('nothing to draw: give a results JSON and/or '
                          '--paper.')
    fig = new_figure(5.2 * len(panels), 4.8)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (matrix, centre, name) in zip(axes, panels):
        draw_matrix(ax, matrix, centre, name, fig)
    fig.tight_layout()
    return save_figure(fig, out, vis_backends=vis_backends, vis_dir=vis_dir)
