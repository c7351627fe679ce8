# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Measure what distillation costs on top of the student and the teacher.

    python tools/analysis/benchmark_distill.py CONFIG [--batch-size 64]
        [--input-size 32 32] [--iters 20] [--warmup 5] [--threads 2]
        [--amp] [--compare-original] [--profile N]

In one run, on identical random batches, it times the model-only train step
(forward, backward, optimizer step) of

    (a) the student alone,
    (b) the teacher forward alone (what the distiller runs of it),
    (c) the full distiller (student + teacher + connector + loss),

interleaving the three every round so that machine noise hits them alike,
and prints the medians, images per second, the peak memory of each (CUDA
memory on a GPU) and the ratio c / (a + b): 1.0 would mean distillation
costs nothing beyond running both networks. ``--amp`` runs the three under
autocast (fp16 with a gradient scaler on CUDA, bf16 on CPU), as
``tools/train.py --amp`` trains. ``--compare-original`` adds (d), the
distiller with the authors' ABF fusion (concatenation, explicit resize),
timed in the same run.
"""
import argparse
import gc
import os
import os.path as osp
import statistics
import sys
import time

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a ReviewKD distiller config')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='default: 64 (classification), 2 (detection)')
    parser.add_argument('--input-size', type=int, nargs=2, default=None,
                        metavar=('H', 'W'),
                        help='default: 32 32 (CIFAR), 224 224 (ImageNet), '
                        '512 512 (detection)')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads (CPU runs)')
    parser.add_argument('--device', default=None,
                        help='cuda or cpu (default: cuda if available)')
    parser.add_argument('--cfg-options', nargs='+', default=None)
    parser.add_argument(
        '--amp',
        action='store_true',
        help='autocast: fp16 + gradient scaler on CUDA, bf16 on CPU')
    parser.add_argument(
        '--compare-original',
        action='store_true',
        help='also time (d) the distiller with the authors\' ABF fusion '
        '(concatenation + explicit resize) in the same run')
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='N',
        help='after timing, print the N most expensive operators (self CPU '
        'time, grouped by input shape) of one distiller train step')
    return parser.parse_args(argv)


def build_distiller(args):
    from mmengine.registry import DefaultScope

    import mmreviewkd  # noqa: F401
    from mmreviewkd.registry import MODELS
    from mmreviewkd.utils import register_all_modules
    from mmreviewkd.utils.config_check import load_config
    register_all_modules(init_default_scope=False)
    cfg = load_config(args.config)
    if args.cfg_options:
        from mmengine.config import DictAction
        parser = argparse.ArgumentParser()
        parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--o', *args.cfg_options]).o)
    model_cfg = cfg.model
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model_cfg.pop('teacher_ckpt', None)  # random teacher weights time the same
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return MODELS.build(model_cfg), cfg


def make_batch(distiller, batch_size, size, device):
    """Random inputs and data samples the student's loss accepts."""
    import torch
    inputs = torch.randn(batch_size, 3, *size, device=device)
    student = distiller.student
    if hasattr(student, 'head') and not hasattr(student, 'bbox_head'):
        from mmpretrain.structures import DataSample
        num_classes = getattr(student.head, 'num_classes', 10)
        samples = [
            DataSample().set_gt_label(i % num_classes)
            for i in range(batch_size)
        ]
    else:
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        samples = []
        for i in range(batch_size):
            s = DetDataSample()
            s.set_metainfo(
                dict(img_shape=size, pad_shape=size, ori_shape=size,
                     scale_factor=(1., 1.), batch_input_shape=size))
            inst = InstanceData()
            h, w = size
            inst.bboxes = torch.tensor(
                [[w * .1, h * .1, w * .5, h * .6],
                 [w * .4, h * .3, w * .9, h * .8]], device=device)
            inst.labels = torch.tensor([i % 3, (i + 1) % 3], device=device)
            if getattr(student, 'with_mask', False):
                from mmdet.structures.mask import BitmapMasks
                masks = torch.zeros(2, h, w, dtype=torch.uint8)
                masks[0, int(h * .1):int(h * .6), int(w * .1):int(w * .5)] = 1
                masks[1, int(h * .3):int(h * .8), int(w * .4):int(w * .9)] = 1
                inst.masks = BitmapMasks(masks.numpy(), h, w)
            s.gt_instances = inst
            samples.append(s)
    return inputs, samples


def _proc_status_mb(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


def cpu_peak_mb(fn, repeats):
    """Peak memory that ``fn`` adds, on CPU: run it in a forked child and
    read the child's high-water mark (VmHWM) above its resident size at the
    fork. Falls back to NaN where fork or /proc are unavailable."""
    if not hasattr(os, 'fork') or not osp.exists('/proc/self/status'):
        return float('nan')
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        try:
            # The parent's OpenMP thread pool does not survive fork(): a
            # multi-threaded conv in the child hangs (seen with the mmdet
            # detectors). Peak memory does not depend on the thread count.
            import torch
            torch.set_num_threads(1)
            base = _proc_status_mb('VmRSS')
            for _ in range(repeats):
                fn()
            os.write(write_fd, f'{_proc_status_mb("VmHWM") - base}'.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = os.read(read_fd, 64)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return float(data) if data else float('nan')


def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    device_type = 'cuda' if device.startswith('cuda') else 'cpu'
    amp_dtype = torch.float16 if device_type == 'cuda' else torch.bfloat16
    use_scaler = args.amp and device_type == 'cuda'
    scaler = torch.amp.GradScaler('cuda', enabled=use_scaler) if hasattr(
        torch.amp, 'GradScaler') else torch.cuda.amp.GradScaler(
            enabled=use_scaler)  # torch < 2.3
    distiller, cfg = build_distiller(args)
    distiller.to(device).train()
    is_det = not (hasattr(distiller.student, 'head')
                  and not hasattr(distiller.student, 'bbox_head'))
    batch = args.batch_size or (2 if is_det else 64)
    size = tuple(args.input_size) if args.input_size else (
        (512, 512) if is_det else
        tuple(distiller_input_size(distiller, cfg)))
    inputs, samples = make_batch(distiller, batch, size, device)
    params_student = [p for p in distiller.student.parameters()
                      if p.requires_grad]
    params_all = [p for p in distiller.parameters() if p.requires_grad]
    opt_student = torch.optim.SGD(params_student, lr=1e-4, momentum=0.9)
    opt_all = torch.optim.SGD(params_all, lr=1e-4, momentum=0.9)
    distiller.distill_factor = lambda: distiller.loss_weight or 1.0

    def sync():
        if device.startswith('cuda'):
            torch.cuda.synchronize()

    def autocast():
        return torch.autocast(device_type, dtype=amp_dtype, enabled=args.amp)

    def update(loss, optimizer):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def step_student():
        with autocast():
            losses = distiller.student.loss(inputs, samples)
            # parse_losses also sums per-level lists (mmdet RPN losses)
            loss, _ = distiller.student.parse_losses(losses)
        distiller.student_tap.clear()
        update(loss, opt_student)

    def step_teacher():
        with torch.no_grad(), autocast():
            distiller.teacher.extract_feat(inputs)
        distiller.teacher_tap.clear()

    def step_distiller():
        with autocast():
            losses = distiller.loss(inputs, samples)
            loss, _ = distiller.parse_losses(losses)
        update(loss, opt_all)

    phases = [('a) student train step', step_student),
              ('b) teacher forward', step_teacher),
              ('c) distiller train step', step_distiller)]
    if args.compare_original:
        from mmreviewkd.models.connectors.abf import ABF
        ours = ABF._fuse

        def original_fuse(self, x, residual):
            import torch.nn.functional as F
            residual = F.interpolate(
                residual, size=x.shape[-2:], mode='nearest')
            att = torch.sigmoid(self.att_conv(torch.cat([x, residual], 1)))
            return x * att[:, 0:1] + residual * att[:, 1:2]

        def step_original():
            ABF._fuse = original_fuse
            try:
                step_distiller()
            finally:
                ABF._fuse = ours

        phases.append(('d) ... original ABF fusion', step_original))
    times = {name: [] for name, _ in phases}
    peaks = {}
    for name, fn in phases:  # warm-up and memory, one phase at a time
        gc.collect()
        if device.startswith('cuda'):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        for _ in range(args.warmup):
            fn()
        sync()
        if device.startswith('cuda'):
            peaks[name] = (torch.cuda.max_memory_allocated() - base) / 2**20
        else:
            peaks[name] = cpu_peak_mb(fn, 2)
    for _ in range(args.iters):
        for name, fn in phases:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) * 1000 for name, ts in times.items()}

    print(f'config: {args.config}')
    where = torch.cuda.get_device_name(device) if device_type == 'cuda' \
        else f'{torch.get_num_threads()} threads'
    precision = f'autocast {str(amp_dtype)[6:]}' if args.amp else 'fp32'
    print(f'device: {device} ({where}), {precision}, batch {batch} x 3 x '
          f'{size[0]} x {size[1]}, {args.iters} timed rounds')
    n_s = sum(p.numel() for p in distiller.student.parameters())
    n_c = sum(p.numel() for p in distiller.connector.parameters())
    n_t = sum(p.numel() for p in distiller.teacher.parameters())
    print(f'params: student {n_s / 1e6:.3f}M, connector {n_c / 1e6:.3f}M, '
          f'teacher {n_t / 1e6:.3f}M')
    memory = 'CUDA memory' if device_type == 'cuda' else 'memory'
    for name, _ in phases:
        print(f'{name:26s} median {med[name]:8.2f} ms, '
              f'{batch / med[name] * 1000:8.1f} images/s, peak {memory} '
              f'{peaks[name]:7.1f} MiB above the model')
    a, b, c = (med[name] for name, _ in phases[:3])
    print(f'ratio c / (a + b) = {c / (a + b):.3f}')
    if args.compare_original:
        d = med[phases[3][0]]
        print(f'ratio d / (a + b) = {d / (a + b):.3f} (authors\' fusion)')
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        activities = [ProfilerActivity.CPU]
        if device.startswith('cuda'):
            activities.append(ProfilerActivity.CUDA)
        with profile(activities=activities, record_shapes=True) as prof:
            step_distiller()
            sync()
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by='self_cuda_time_total'
            if device.startswith('cuda') else 'self_cpu_time_total',
            row_limit=args.profile))
    return c / (a + b)


def distiller_input_size(distiller, cfg):
    """The distiller's dummy-input size (32 for CIFAR configs)."""
    return tuple(distiller.infer_input_shape[1:])


if __name__ == '__main__':
    main()
