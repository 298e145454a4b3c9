"""Evaluation against ground truth.

- ``metrics.py``     PQ^scene, SQ, RQ and mIoU (the protocol in docs/conventions.md)
- ``evaluate.py``    ``pcf-gs eval``: scores a segment output, test PSNR
- ``diagnostics.py`` object isolation in renders, boundary vs interior uncertainty
"""
