"""pcf-gs: probabilistic contrastive fusion (PCF-Lift) on Gaussian splats.

Lifts noisy, view-inconsistent 2D panoptic predictions into a 3D Gaussian
splatting scene whose Gaussians carry semantic logits and a probabilistic
instance embedding N(mu, diag(var)).
"""

__version__ = "0.1.0"
