"""Segmentation: consistent instance IDs from the trained embeddings.

- ``mvoa.py``            MVOA (PCF-Lift Algorithm 1) and the HDBSCAN baseline
- ``gaussian_labels.py`` one instance / class per Gaussian (prototype kernel or blending-weight votes)
- ``pipeline.py``        ``pcf-gs segment``: embed views -> prototypes -> label views -> label Gaussians, streamed
- ``distributed.py``     ``segment --distributed``: views shared among torchrun's processes, merged on rank 0
"""
