# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Figures drawn with matplotlib's Agg canvas (no pyplot, no display, no
global backend switch), written as PNG files and, on request, to MMEngine's
visualizer backends (local files, TensorBoard, Weights & Biases)."""
import argparse
import os
import os.path as osp
import uuid
from typing import Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmreviewkd.utils.errors import ConfigError

#: ``--vis-backend`` choices and the MMEngine backends they build
VIS_BACKENDS = {
    'local': 'LocalVisBackend',
    'tensorboard': 'TensorboardVisBackend',
    'wandb': 'WandbVisBackend',
}
#: the package each backend needs, for the error message
_BACKEND_PACKAGES = {'tensorboard': 'tensorboard', 'wandb': 'wandb'}


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure on its own Agg canvas (independent of pyplot)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_to_rgb(fig: Figure) -> np.ndarray:
    """Render ``fig``: an (H, W, 3) uint8 RGB array."""
    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.array(canvas.buffer_rgba())[..., :3].copy()


def add_vis_args(parser: argparse.ArgumentParser) -> None:
    """``--vis-backend`` (repeatable) and ``--vis-dir``."""
    parser.add_argument(
        '--vis-backend',
        action='append',
        choices=sorted(VIS_BACKENDS),
        default=[],
        help='also write the picture to this MMEngine visualizer backend '
        '(repeatable): local (PNG under VIS_DIR/vis_data/vis_image), '
        'tensorboard (events under VIS_DIR/vis_data; needs the tensorboard '
        'package), wandb (needs wandb)')
    parser.add_argument(
        '--vis-dir',
        default=None,
        help="save_dir of the visualizer backends (default: the PNG's "
        'folder)')


def write_to_backends(images: Sequence[tuple],
                      backends: Sequence[str],
                      save_dir: str,
                      step: int = 0) -> None:
    """Write ``(name, rgb uint8 image)`` pairs with
    ``mmengine.visualization.Visualizer(vis_backends=..., save_dir=...)``.

    Raises:
        ConfigError: An unknown backend, or a backend whose package is not
            installed (with the ``pip install`` to run).
    """
    if not backends:
        return
    from mmengine.visualization import Visualizer
    unknown = [b for b in backends if b not in VIS_BACKENDS]
    if unknown:
        raise ConfigError(f'unknown visualizer backend {unknown[0]!r}; use '
                          f'{", ".join(sorted(VIS_BACKENDS))}.')
    for backend in backends:
        package = _BACKEND_PACKAGES.get(backend)
        if package is not None:
            try:
                __import__(package)
            except ImportError:
                raise ConfigError(
                    f'--vis-backend {backend} needs the {package} package: '
                    f'pip install {package}') from None
    seen = []
    for b in backends:
        if b not in seen:
            seen.append(b)
    visualizer = Visualizer(
        name=f'mmreviewkd_pictures_{uuid.uuid4().hex[:8]}',
        vis_backends=[dict(type=VIS_BACKENDS[b]) for b in seen],
        save_dir=save_dir)
    try:
        for name, image in images:
            visualizer.add_image(name, image, step=step)
    finally:
        visualizer.close()


def save_figure(fig: Figure,
                out: str,
                name: Optional[str] = None,
                vis_backends: Sequence[str] = (),
                vis_dir: Optional[str] = None,
                dpi: Optional[int] = None) -> str:
    """Write ``fig`` to the PNG ``out`` (folders created) and, when asked,
    to MMEngine visualizer backends under ``vis_dir`` (default: the PNG's
    folder) as image ``name`` (default: the PNG's stem).

    Returns:
        str: ``out``.
    """
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=dpi or fig.dpi, format='png')
    if vis_backends:
        name = name or osp.splitext(osp.basename(out))[0]
        write_to_backends([(name, figure_to_rgb(fig))], vis_backends,
                          vis_dir or folder)
    return out
