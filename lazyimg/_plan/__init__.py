"""Planning, pure: chunks along the disk layout, numpy index algebra, and read plans.

The BIAP2 arithmetic. Nothing in this layer touches a file or imports another lazyimg layer
except :mod:`lazyimg.errors`: every function is easy to property-test.
"""
