# Copyright (c) mmreviewkd contributors. All rights reserved.
"""CPU quickstart: teacher, baseline student and ReviewKD student on real data.

    python tools/quickstart.py [--work-dir work_dirs/quickstart] [--epochs 20]

1. Writes scikit-learn's bundled handwritten digits (1797 real 8x8 images,
   10 classes; nothing is downloaded) as a 32x32 RGB dataset in the CIFAR
   python-pickle format under ``WORK_DIR/data``.
2. Trains, each with ``tools/train.py`` and the configs in
   ``configs/quickstart/``: the teacher (CIFAR resnet32), the student alone
   (resnet8, the baseline) and the ReviewKD student (resnet8 distilled from
   that teacher).
3. Evaluates the three with ``tools/test.py`` (the ReviewKD student through
   its exported student-only checkpoint and the plain student config) and
   prints a table.
4. Draws pictures into ``WORK_DIR/pictures`` and prints where they are: the
   training curves of the baseline and the ReviewKD student
   (``tools/analysis/plot_curves.py``), a few digits test images as PNG
   files and the ABF attention maps of the ReviewKD distiller over them
   (``tools/analysis/visualize_abf.py``).
"""
import argparse
import glob
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys
import time

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
CFG_DIR = osp.join(ROOT, 'configs', 'quickstart')
TEACHER_CFG = osp.join(CFG_DIR, 'resnet32_1xb64-20e_digits.py')
STUDENT_CFG = osp.join(CFG_DIR, 'resnet8_1xb64-20e_digits.py')
REVIEWKD_CFG = osp.join(CFG_DIR,
                        'reviewkd_resnet32_resnet8_1xb64-20e_digits.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/quickstart')
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument(
        '--num-train',
        type=int,
        default=500,
        help='training images (the rest of the 1797 are the test set); a '
        'small training set is where a teacher helps most')
    return parser.parse_args(argv)


def make_digits_dataset(root: str, num_train: int, seed: int = 0) -> str:
    """Render sklearn's digits to 32x32 RGB and write CIFAR pickle files."""
    from sklearn.datasets import load_digits

    from mmreviewkd.datasets import write_cifar100
    digits = load_digits()
    rng = np.random.RandomState(seed)
    order = rng.permutation(len(digits.images))
    # 8x8 in [0, 16] -> 32x32 by 4x4 blocks, tinted with a random colour per
    # image so that the three channels differ.
    gray = digits.images[order] / 16.0
    big = np.kron(gray, np.ones((4, 4)))[..., None]
    tint = rng.uniform(0.5, 1.0, size=(len(big), 1, 1, 3))
    images = (big * tint * 255).round().astype(np.uint8)
    labels = digits.target[order]
    write_cifar100(
        root,
        train_images=images[:num_train],
        train_labels=labels[:num_train],
        test_images=images[num_train:],
        test_labels=labels[num_train:],
        classes=[str(i) for i in range(10)])
    return root


def run(cmd, log_file):
    """Run a tool, teeing nothing: its output goes to ``log_file``."""
    t0 = time.time()
    with open(log_file, 'w') as f:
        proc = subprocess.run(
            cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        with open(log_file) as f:
            tail = ''.join(f.readlines()[-30:])
        raise SystemExit(f'{tail}\nquickstart: `{" ".join(cmd)}` failed '
                         f'(exit {proc.returncode}); full log: {log_file}')
    return time.time() - t0


def train(config, work_dir, options, log_name):
    cmd = [
        sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
        '--cfg-options', *options
    ]
    os.makedirs(work_dir, exist_ok=True)
    return run(cmd, osp.join(work_dir, log_name))


def test(config, checkpoint, work_dir, options):
    """``tools/test.py``; returns top-1 accuracy from the metrics it logs."""
    os.makedirs(work_dir, exist_ok=True)
    log = osp.join(work_dir, 'test.log')
    before = set(glob.glob(osp.join(work_dir, '*', '*.json')))
    run([
        sys.executable, 'tools/test.py', config, checkpoint, '--work-dir',
        work_dir, '--cfg-options', *options
    ], log)
    new = sorted(set(glob.glob(osp.join(work_dir, '*', '*.json'))) - before)
    for path in reversed(new):
        with open(path) as f:
            for line in f:
                metrics = json.loads(line)
                if 'accuracy/top1' in metrics:
                    return float(metrics['accuracy/top1'])
    with open(log) as f:
        found = re.findall(r'accuracy/top1: ([0-9.]+)', f.read())
    if not found:
        raise SystemExit(f'quickstart: no accuracy in {log}')
    return float(found[-1])


def save_test_images(data_root: str, out_dir: str, num: int = 4) -> list:
    """The first test image of each of ``num`` classes as PNG files."""
    from PIL import Image
    with open(osp.join(data_root, 'cifar-100-python', 'test'), 'rb') as f:
        test = pickle.load(f, encoding='latin1')
    images = np.asarray(test['data'], dtype=np.uint8).reshape(
        -1, 3, 32, 32).transpose(0, 2, 3, 1)
    os.makedirs(out_dir, exist_ok=True)
    paths, seen = [], set()
    for i, label in enumerate(test['fine_labels']):
        if label in seen:
            continue
        seen.add(label)
        path = osp.join(out_dir, f'test{i:04d}_digit{label}.png')
        Image.fromarray(images[i]).save(path)
        paths.append(path)
        if len(paths) == num:
            break
    return paths


def draw_pictures(work, dirs, epochs, data_root):
    """Curves of the two students, test images and their ABF maps."""
    from mmreviewkd.analysis import plot_curves, visualize_abf
    out = osp.join(work, 'pictures')
    curves = plot_curves(
        [dirs['student'], dirs['reviewkd']],
        out=osp.join(out, 'curves.png'),
        labels=['resnet8 alone', 'resnet8 ReviewKD'],
        title='quickstart (digits): the student alone vs ReviewKD')
    images = save_test_images(data_root, osp.join(out, 'digits'))
    maps = visualize_abf(
        REVIEWKD_CFG,
        osp.join(dirs['reviewkd'], f'epoch_{epochs}.pth'),
        images,
        osp.join(out, 'abf'))
    return curves, images, maps


def main(argv=None):
    args = parse_args(argv)
    work = osp.abspath(args.work_dir)
    data_root = osp.join(work, 'data')
    t_start = time.time()
    print(f'[quickstart] writing the digits dataset to {data_root}')
    make_digits_dataset(data_root, args.num_train)
    e = args.epochs
    common = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'train_cfg.max_epochs={e}', f'train_cfg.val_interval={e}',
        f'param_scheduler.T_max={e}', f'default_hooks.checkpoint.interval={e}'
    ]
    test_opts = common[:3]
    dirs = {k: osp.join(work, k) for k in ('teacher', 'student', 'reviewkd')}
    teacher_ckpt = osp.join(dirs['teacher'], f'epoch_{e}.pth')

    steps = [
        ('teacher (resnet32)', TEACHER_CFG, dirs['teacher'], common),
        ('baseline student (resnet8)', STUDENT_CFG, dirs['student'], common),
        ('ReviewKD student (resnet8)', REVIEWKD_CFG, dirs['reviewkd'],
         common + [f'model.teacher_ckpt={teacher_ckpt}']),
    ]
    for i, (name, cfg, wd, opts) in enumerate(steps, 1):
        print(f'[quickstart] {i}/3 training the {name} for {e} epochs '
              f'(log: {osp.join(wd, "train.log")})', flush=True)
        secs = train(cfg, wd, opts, 'train.log')
        print(f'[quickstart]     done in {secs:.0f} s', flush=True)

    student_ckpt = osp.join(dirs['reviewkd'], 'student_final.pth')
    print('[quickstart] evaluating with tools/test.py', flush=True)
    acc = {
        'teacher':
        test(TEACHER_CFG, teacher_ckpt, osp.join(dirs['teacher'], 'test'),
             test_opts),
        'baseline':
        test(STUDENT_CFG, osp.join(dirs['student'], f'epoch_{e}.pth'),
             osp.join(dirs['student'], 'test'), test_opts),
        # the exported student-only checkpoint in the plain student config
        'reviewkd':
        test(STUDENT_CFG, student_ckpt, osp.join(dirs['reviewkd'], 'test'),
             test_opts),
    }
    rows = [('teacher resnet32', acc['teacher']),
            ('student resnet8, trained alone', acc['baseline']),
            ('student resnet8, ReviewKD', acc['reviewkd'])]
    print()
    print(f'{"model (digits test set, top-1 %)":40s} accuracy')
    print('-' * 50)
    for name, value in rows:
        print(f'{name:40s} {value:7.2f}')
    print('-' * 50)
    print(f'ReviewKD - baseline: {acc["reviewkd"] - acc["baseline"]:+.2f} '
          f'points (one seed; expect a point or two of noise)')
    print(f'student-only checkpoint: {student_ckpt}')
    print(f'  loads into the plain student config: python tools/test.py '
          f'{osp.relpath(STUDENT_CFG, ROOT)} {student_ckpt}')

    print('[quickstart] drawing the pictures', flush=True)
    curves, images, maps = draw_pictures(work, dirs, e, data_root)
    print(f'pictures in {osp.join(work, "pictures")}:')
    print(f'  training curves (baseline vs ReviewKD): {curves}')
    for path in images:
        print(f'  test image: {path}')
    for path in maps:
        print(f'  ABF attention maps: {path}')
    print(f'  redraw: python tools/analysis/plot_curves.py {dirs["student"]} '
          f'{dirs["reviewkd"]} --out curves.png')
    print(f'          python tools/analysis/visualize_abf.py '
          f'{osp.relpath(REVIEWKD_CFG, ROOT)} '
          f'{osp.join(dirs["reviewkd"], f"epoch_{e}.pth")} IMAGE...')
    print(f'total time: {(time.time() - t_start) / 60:.1f} min')


if __name__ == '__main__':
    main()
