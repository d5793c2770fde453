"""Notebook-side pieces of Pachón: widgets and the JupyterLab extension's Python half."""
