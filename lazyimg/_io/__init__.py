"""Bytes: what a file is, and getting its bytes off local disk or out of a gzip stream.

:mod:`~lazyimg._io.formats` (what a file is, from nibabel's header), :mod:`~lazyimg._io.axes`
(which axis is space, which is time, and their labels), :mod:`~lazyimg._io.files` (the
per-process cache of open files), :mod:`~lazyimg._io.read` (the read task) and
:mod:`lazyimg._io.gzip` (compressed streams). Stands on :mod:`lazyimg._plan`.
"""
