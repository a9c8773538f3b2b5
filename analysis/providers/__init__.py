"""Metric providers: prometheus, web and job, behind the protocol in base.py."""
