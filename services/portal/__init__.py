"""The Bokeh web portal (a later issue)."""
