"""Patron: recommender training and serving for shops that sell to repeat customers."""

__version__ = "0.1.0"
