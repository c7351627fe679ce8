# Copyright (c) mmreviewkd contributors. All rights reserved.
from .at import ATLoss
from .crd import CRDLoss
from .dkd import DKDLoss
from .fitnet import FitNetLoss
from .hcl import HCLLoss
from .kd import KDLoss
from .ofd import OFDLoss
from .pkt import PKTLoss
from .rkd import RKDLoss
from .vid import VIDLoss

__all__ = [
    'ATLoss', 'CRDLoss', 'DKDLoss', 'FitNetLoss', 'HCLLoss', 'KDLoss',
    'OFDLoss', 'PKTLoss', 'RKDLoss', 'VIDLoss'
]
