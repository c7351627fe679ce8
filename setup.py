# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Install mmreviewkd: ``pip install -e .`` (or ``bash tools/setup_env.sh``)."""
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'README.md')


def get_version() -> str:
    scope: dict = {}
    with open(osp.join(ROOT, 'mmreviewkd', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname: str) -> list:
    """Read a requirements file, following ``-r`` includes, dropping comments."""
    reqs = []
    with open(osp.join(ROOT, fname)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(
                    osp.join(osp.dirname(fname), line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


def add_mim_extension() -> None:
    """Expose configs/ and tools/ under ``mmreviewkd/.mim`` the way mim expects.

    Editable installs get symlinks (edits show up immediately); wheel/sdist
    builds get copies.
    """
    if 'develop' in sys.argv or any('editable' in a for a in sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'install', 'build'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'mmreviewkd', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(ROOT, name)
        dst = osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), dst)
                continue
            except OSError:
                warnings.warn(f'cannot symlink {src}; copying instead')
        if osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmreviewkd',
        version=get_version(),
        description='ReviewKD (Distilling Knowledge via Knowledge Review) '
        'for MMEngine, mmpretrain and mmdet',
        long_description=open(osp.join(ROOT, 'README.md')).read()
        if osp.exists(osp.join(ROOT, 'README.md')) else '',
        long_description_content_type='text/markdown',
        keywords='knowledge distillation, ReviewKD, OpenMMLab',
        packages=find_packages(exclude=('configs', 'tools', 'tests')),
        include_package_data=True,
        package_data={'mmreviewkd': ['.mim/**/*', '.mim/*']},
        python_requires='>=3.8',
        license='Apache License 2.0',
        # No torch / torchvision / mmcv here: `pip install -e .` must not
        # replace a cluster's torch build nor compile mmcv over an installed
        # mmcv or mmcv-lite. mmcv comes with the "mim" extra (or `mim
        # install`), mmdet with "det"; requirements/tested/ has the exact
        # stacks tools/setup_env.sh builds.
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'mim': parse_requirements('requirements/mminstall.txt'),
            'det': parse_requirements('requirements/det.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'all': parse_requirements('requirements.txt'),
        },
        zip_safe=False)
