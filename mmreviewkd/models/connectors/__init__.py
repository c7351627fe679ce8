# Copyright (c) mmreviewkd contributors. All rights reserved.
from .abf import ABF, ABFConnector
from .fitnet_regressor import FitNetRegressor
from .ofd_connector import OFDConnector
from .review_pairs import ReviewPairsConnector

__all__ = [
    'ABF', 'ABFConnector', 'FitNetRegressor', 'OFDConnector',
    'ReviewPairsConnector'
]
