"""Datasets the pipelines ship with, written to files by the project (tests and demos never download)."""
