"""Training data sources.

Every source yields samples with ``image`` (``HxWx3`` uint8 RGB) and ``masks`` (``MxHxW`` bool,
one binary mask per instance, in the image's pixel frame): :mod:`training.data.synthetic` draws
scenes by seed, :mod:`training.data.coco` reads COCO-format annotations.
"""
