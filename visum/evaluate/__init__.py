"""Evaluations of visum components against ground truth."""
