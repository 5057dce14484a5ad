"""gzip streams: load-time checks, the seek-point index, inflating from seek points, the reader.

``check`` -> ``index`` -> ``inflate`` -> ``reader``: each module stands only on those before it.
"""
