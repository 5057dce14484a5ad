"""Writers: NIfTI headers from labelled arrays, and the atomic region writer.

Stands on the graphs and on :mod:`lazyimg._io.axes`; :mod:`lazyimg.write` (``save``) on top.
"""
