"""Datasets in wsolevaluation's metadata layout."""
