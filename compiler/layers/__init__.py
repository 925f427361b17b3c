"""The layer families. Importing this package fills the registry.

The list is explicit (no scanning of module names): adding a family means adding it here, in
the order the docs and `convspec layers` list them.
"""

from . import activation, conv, dense, merge, norm, pool, shape, structure, upsample  # noqa: F401

FAMILIES = ("conv", "pool", "upsample", "norm", "activation", "dense", "structure", "shape", "merge")
