# Copyright (c) mmreviewkd contributors. All rights reserved.
"""A tiny COCO-format detection / instance segmentation dataset on disk."""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# The 80 category ids of COCO 2017 (non-contiguous, 1..90).
COCO_CATEGORY_IDS: Tuple[int, ...] = tuple(
    list(range(1, 12)) + list(range(13, 26)) + [27, 28] + list(range(31, 45)) +
    list(range(46, 66)) + [67, 70] + list(range(72, 83)) + list(range(84, 91)))

# (height, width) of the generated images, cycled: landscape and portrait,
# none a multiple of 32, so batches are padded and non-square.
DEFAULT_SIZES = ((96, 128), (112, 144), (100, 120), (128, 100))


def _coco_classes() -> List[str]:
    from mmdet.datasets import CocoDataset
    return list(CocoDataset.METAINFO['classes'])


def _polygon(rng: np.random.RandomState, height: int,
             width: int) -> List[float]:
    """A random convex polygon (8-12 vertices of a jittered ellipse) that
    fits in the image and is at least 20 px across."""
    rx = rng.uniform(10, width / 3)
    ry = rng.uniform(10, height / 3)
    cx = rng.uniform(rx + 1, width - rx - 1)
    cy = rng.uniform(ry + 1, height - ry - 1)
    n = rng.randint(8, 13)
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    scale = rng.uniform(0.85, 1.0, n)
    xs = np.clip(cx + rx * scale * np.cos(angles), 0, width - 1)
    ys = np.clip(cy + ry * scale * np.sin(angles), 0, height - 1)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def _polygon_area(poly: Sequence[float]) -> float:
    xs, ys = np.asarray(poly[0::2]), np.asarray(poly[1::2])
    return float(0.5 *
                 abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def _write_split(root: str, split: str, num_images: int,
                 categories: List[dict], used: Sequence[int],
                 sizes: Sequence[Tuple[int, int]], rng: np.random.RandomState,
                 ext: str, first_ann_id: int) -> int:
    from PIL import Image, ImageDraw

    img_dir = osp.join(root, f'{split}2017')
    os.makedirs(img_dir, exist_ok=True)
    colours = {
        cat['id']: tuple(int(c) for c in rng.randint(40, 256, 3))
        for cat in categories
    }
    images, annotations = [], []
    ann_id = first_ann_id
    for index in range(num_images):
        height, width = sizes[index % len(sizes)]
        image_id = index + 1
        file_name = f'{index + 1:012d}.{ext}'
        pixels = rng.randint(0, 40, size=(height, width, 3)).astype(np.uint8)
        canvas = Image.fromarray(pixels)
        draw = ImageDraw.Draw(canvas)
        for k in range(1 + index % 3):
            cat_id = categories[used[(index + k) % len(used)]]['id']
            poly = _polygon(rng, height, width)
            draw.polygon(
                list(zip(poly[0::2], poly[1::2])), fill=colours[cat_id])
            xs, ys = poly[0::2], poly[1::2]
            x0, y0 = min(xs), min(ys)
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=image_id,
                    category_id=cat_id,
                    segmentation=[poly],
                    area=round(_polygon_area(poly), 2),
                    bbox=[
                        round(x0, 2),
                        round(y0, 2),
                        round(max(xs) - x0, 2),
                        round(max(ys) - y0, 2)
                    ],
                    iscrowd=0))
            ann_id += 1
        canvas.save(osp.join(img_dir, file_name))
        images.append(
            dict(id=image_id, file_name=file_name, height=height, width=width))
    ann_file = osp.join(root, 'annotations', f'instances_{split}2017.json')
    with open(ann_file, 'w') as f:
        json.dump(
            dict(
                info=dict(description=f'mmreviewkd tiny COCO {split}'),
                licenses=[],
                images=images,
                annotations=annotations,
                categories=categories), f)
    return ann_id


def make_coco(root: str,
              num_train: int = 4,
              num_val: int = 2,
              sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES,
              num_used_classes: int = 3,
              classes: Optional[Sequence[str]] = None,
              ext: str = 'jpg',
              seed: int = 0) -> Dict[str, str]:
    """Write a tiny dataset in the real COCO 2017 layout mmdet expects.

    Creates ``root/train2017/*.jpg``, ``root/val2017/*.jpg`` and
    ``root/annotations/instances_{train,val}2017.json`` (COCO instances
    format: images, annotations with ``bbox`` in xywh, polygon
    ``segmentation``, ``area``, ``iscrowd``; categories). Every image holds
    1-3 filled random convex polygons whose colour depends on the category,
    on a dark noisy background. Image ``i`` has size ``sizes[i % len]``.

    All categories of ``classes`` are listed (by default the 80 COCO
    classes with their real, non-contiguous ids, so configs with
    ``num_classes=80`` and mmdet's ``CocoMetric`` work unchanged); the
    annotations use only the first ``num_used_classes`` of them.

    Args:
        root (str): The ``data_root`` to write into.
        num_train (int): Number of training images. Defaults to 4.
        num_val (int): Number of validation images. Defaults to 2.
        sizes (Sequence[tuple[int, int]]): (height, width) of the images,
            cycled. Each side must be at least 64.
        num_used_classes (int): Categories that get annotations.
        classes (Sequence[str], optional): Category names. Defaults to the
            80 COCO classes of mmdet.
        ext (str): ``'jpg'`` or ``'png'``.
        seed (int): Random seed.

    Returns:
        dict: ``data_root``, ``train_ann``, ``val_ann`` (absolute paths).
    """
    if ext not in ('jpg', 'png'):
        raise ValueError(f'make_coco: ext must be "jpg" or "png", got '
                         f'{ext!r}.')
    if any(min(size) < 64 for size in sizes):
        raise ValueError(f'make_coco: every image side must be >= 64 px, '
                         f'got sizes {list(sizes)}.')
    names = list(classes) if classes is not None else _coco_classes()
    if not 1 <= num_used_classes <= len(names):
        raise ValueError(f'make_coco: num_used_classes must be in [1, '
                         f'{len(names)}], got {num_used_classes}.')
    ids = COCO_CATEGORY_IDS if len(names) == 80 else tuple(
        range(1,
              len(names) + 1))
    categories = [
        dict(id=i, name=name, supercategory='thing')
        for i, name in zip(ids, names)
    ]
    root = osp.abspath(root)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    rng = np.random.RandomState(seed)
    used = list(range(num_used_classes))
    next_id = _write_split(root, 'train', num_train, categories, used, sizes,
                           rng, ext, 1)
    _write_split(root, 'val', num_val, categories, used, sizes, rng, ext,
                 next_id)
    return dict(
        data_root=root,
        train_ann=osp.join(root, 'annotations', 'instances_train2017.json'),
        val_ann=osp.join(root, 'annotations', 'instances_val2017.json'))
