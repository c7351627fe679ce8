# Copyright (c) mmreviewkd contributors. All rights reserved.
__version__ = '0.1.0'


def parse_version_info(version_str: str) -> tuple:
    """Parse a version string like ``'0.1.0'`` or ``'0.1.0rc1'`` into a tuple."""
    info = []
    for x in version_str.split('.'):
        if x.isdigit():
            info.append(int(x))
        elif 'rc' in x:
            patch, rc = x.split('rc')
            info.extend([int(patch), f'rc{rc}'])
    return tuple(info)


version_info = parse_version_info(__version__)
