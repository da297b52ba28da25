"""Evaluation: metrics, the BEIR-format loader, retrieval and route-comparison experiments, reports."""
