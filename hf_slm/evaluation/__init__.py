"""Evaluation: the ASR judge, metrics, and benchmark tasks."""
