"""Mini-batch k-means in torch, with k-means++ initialisation.

scikit-learn has both, but on numpy arrays and in float64: fitting on features that torch
computes (and predicting inside a batched torch forward) would copy every batch out of torch and
back. This is the small piece hf-slm writes itself for that reason (Sculley 2010, "Web-scale
k-means clustering": per-centre learning rates 1/count).
"""

from __future__ import annotations

import torch

__all__ = ["MiniBatchKMeans", "kmeans_plus_plus", "nearest_centroid"]


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest centroid of each row of ``x`` and the squared distance to it.

    Args:
        x (`torch.FloatTensor` of shape `(n, dim)`): points.
        centroids (`torch.FloatTensor` of shape `(k, dim)`): centres.
    """
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, one matmul for the whole batch
    d = (x * x).sum(-1, keepdim=True) - 2.0 * x @ centroids.T + (centroids * centroids).sum(-1)[None, :]
    dist, idx = d.min(dim=-1)
    return idx, dist.clamp_min(0.0)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre drawn with probability
    proportional to its squared distance from the centres chosen so far."""
    n = x.shape[0]
    if n < k:
        raise ValueError(f"k-means++ needs at least k={k} points to choose from, got {n}; fit on more audio.")
    centres = torch.empty(k, x.shape[1], dtype=x.dtype)
    first = torch.randint(n, (1,), generator=generator).item()
    centres[0] = x[first]
    closest = ((x - centres[0]) ** 2).sum(-1)
    for i in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: fill with random points
            j = torch.randint(n, (1,), generator=generator).item()
        else:
            j = torch.multinomial(closest / total, 1, generator=generator).item()
        centres[i] = x[j]
        closest = torch.minimum(closest, ((x - centres[i]) ** 2).sum(-1))
    return centres


class MiniBatchKMeans:
    """Mini-batch k-means over batches of points that arrive one at a time.

    Example:
        >>> km = MiniBatchKMeans(8, seed=0)
        >>> km.init(torch.randn(1000, 4))
        >>> for _ in range(10):
        ...     km.partial_fit(torch.randn(256, 4))
        >>> km.predict(torch.randn(5, 4)).shape
        torch.Size([5])
    """

    def __init__(self, n_clusters: int, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.generator = torch.Generator().manual_seed(seed)
        self.centroids: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    def init(self, sample: torch.Tensor) -> None:
        """Seed the centres with k-means++ on a sample of points."""
        sample = sample.float()
        self.centroids = kmeans_plus_plus(sample, self.n_clusters, self.generator)
        self.counts = torch.zeros(self.n_clusters, dtype=torch.float64)

    @torch.no_grad()
    def partial_fit(self, x: torch.Tensor) -> float:
        """One mini-batch update; returns the batch's mean squared distance to its centres."""
        if self.centroids is None:
            raise RuntimeError("call init(sample) before partial_fit")
        x = x.float()
        idx, dist = nearest_centroid(x, self.centroids)
        batch_counts = torch.bincount(idx, minlength=self.n_clusters).double()
        sums = torch.zeros_like(self.centroids).index_add_(0, idx, x)
        self.counts += batch_counts
        seen = batch_counts > 0
        # each centre moves towards the mean of its batch points with rate (batch count / total count)
        rate = (batch_counts[seen] / self.counts[seen]).float()[:, None]
        means = sums[seen] / batch_counts[seen].float()[:, None]
        self.centroids[seen] = (1 - rate) * self.centroids[seen] + rate * means
        return float(dist.mean())

    @torch.no_grad()
    def reseed_dead(self, x: torch.Tensor, min_count: float = 1.0) -> int:
        """Move centres that attracted (almost) no points onto the batch points worst served."""
        dead = (self.counts < min_count).nonzero().flatten()
        if len(dead) == 0:
            return 0
        _, dist = nearest_centroid(x.float(), self.centroids)
        far = dist.argsort(descending=True)[: len(dead)]
        self.centroids[dead[: len(far)]] = x.float()[far]
        self.counts[dead[: len(far)]] = min_count
        return len(far)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return nearest_centroid(x.float(), self.centroids)[0]
