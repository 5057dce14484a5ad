"""How a LazyImage shows itself: an HTML summary, orthogonal slices, time series.

``summary`` gathers the facts (shared with ``lazyimg info``), ``text`` spells
them for people, ``html`` lays them out for notebooks, ``slices`` and ``series``
draw with matplotlib (imported only when a picture is asked for).
"""

from lazyimg._display.html import html_repr
from lazyimg._display.series import plot_timeseries
from lazyimg._display.slices import plot_slices
from lazyimg._display.summary import plain_repr

__all__ = ["html_repr", "plain_repr", "plot_slices", "plot_timeseries"]
