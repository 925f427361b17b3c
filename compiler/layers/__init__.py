"""The layer families. Importing this package fills the registry, in this order.

The list is explicit (no scanning of module names): adding a family means adding it here.
"""

from . import activation, conv, dense, merge, norm, pool, structure  # noqa: F401
