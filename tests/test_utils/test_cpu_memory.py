# Copyright (c) mmreviewkd contributors. All rights reserved.
import os.path as osp
import subprocess
import sys

import pytest

from mmreviewkd.utils.cpu_memory import is_supported, resolve_reuse_setting

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# Allocate, touch and free a 96 MiB tensor a few times; print the page
# faults of the last rounds. glibc maps blocks this large afresh each time
# unless freed memory is kept.
_PROBE = """
import resource, sys
import torch
from mmreviewkd.utils.cpu_memory import reuse_freed_cpu_memory
if sys.argv[1] == 'reuse':
    assert reuse_freed_cpu_memory()
    assert reuse_freed_cpu_memory()  # a second call is a no-op
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(24 * 2**20)
    t.fill_(1.0)
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[-3:]))
"""


def _late_faults(mode):
    proc = subprocess.run([sys.executable, '-c', _PROBE, mode],
                          capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(not is_supported(), reason='glibc only')
def test_reused_memory_is_not_page_faulted_again():
    default = _late_faults('default')
    reused = _late_faults('reuse')
    # 96 MiB is 24576 pages of 4 KiB; every round faults them in afresh by
    # default, none once freed memory is kept
    assert default > 10000
    assert reused < default // 10


def test_resolve_reuse_setting():
    assert resolve_reuse_setting('auto', cuda_available=False) is True
    assert resolve_reuse_setting('auto', cuda_available=True) is False
    assert resolve_reuse_setting(True, cuda_available=True) is True
    assert resolve_reuse_setting(False, cuda_available=False) is False
    with pytest.raises(ValueError, match='reuse_freed_cpu_memory must be'):
        resolve_reuse_setting('yes', cuda_available=False)
