"""Figures the notebooks share: digit grids, learning curves and the like."""
