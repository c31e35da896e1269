"""Interactive ipywidgets tools for the notebooks."""
