"""STGA-Net: spatial-temporal graph attention forecasting of both dancers' poses (see :mod:`training.stga.model`)."""
