"""Lifting: train a splat scene whose Gaussians carry appearance, semantics and
a probabilistic instance embedding (PCF-Lift).

- ``model.py``          per-Gaussian attributes; rendering colour, logits and embeddings
- ``pp_kernel.py``      the probability-product kernel (log space, pairwise, chunked)
- ``losses.py``         the PCF-Lift losses (Eqs. 2-6) and appearance L1 + D-SSIM
- ``objective.py``      which losses are on at a step (stages) and one step's loss
- ``batches.py``        the training views on the device and the pixel / view sampler
- ``densify.py``        densification strategy (gsplat default, patched; MCMC on CUDA)
- ``initial_points.py`` initial Gaussians (SfM points or random points in the views)
- ``trainer.py``        ``Trainer`` (model, optimisers, one step) and ``run_training``
- ``fit.py``            the training loop: progress, metrics.jsonl, checkpoints, Ctrl-C
- ``checkpoint.py``     checkpoint files
- ``run.py``            ``Run``: a trained run as one typed object
"""
