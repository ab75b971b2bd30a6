"""How much of an embedding is signal: replicates of the model x concept matrix, refitted and aligned.

    uncertainty = EmbeddingUncertainty(replicates=200, clusters=3, random_state=0)
    uncertainty.fit(population, selection, "population", point_coordinates)   # lce.analysis.matrix
    uncertainty.covariance_, uncertainty.coassignment_, uncertainty.sd_

Issue 16, section 3. Replicate r (r = 0 .. R-1) draws each population run's units with replacement (as many as it
has; numpy's default_rng seeded with [seed, r], the runs drawn in the population's order) and, for a dissected
run with stored replicate labels (unit_replicate), takes each drawn unit's label and IoU in the bootstrap's
replicate r, so that models dissected on one probe move together as the probe sample does; imported runs keep
their labels. A unit counts in replicate r when its label there has IoU > the cut-off and it passes the --units
filter at the point estimate (beats_random and trusted are not recomputed per replicate). The matrix is rebuilt
with the same normalisation (its denominators from the resampled population), the PCA refitted, and the scores
aligned to the point estimate's by orthogonal Procrustes: the rotation (or reflection) R minimising
||Y R - X||, no scaling and no translation (PCA scores are centred). covariance_[m] is the sample covariance
(ddof 1) of model m's aligned coordinates over the replicates; coassignment_[m, n] the share of replicates in
which KMeans (same k, n_init=10, same seed) over the replicate's matrix puts m and n in one cluster.

PCA only: MDS and t-SNE are refused with --uncertainty (their layouts are not a linear map of the matrix, so a
rotation does not align them, and t-SNE refitted 200 times would be slow).
"""

from __future__ import annotations

import numpy as np

from lce.analysis.matrix import PopulationUnits, Selection, unit_counts, units_matrix
from lce.analysis.projection import Projection
from lce.errors import LceError

DEFAULT_REPLICATES = 200  # issue 16; the stored replicate labels hold the first 200 (STORED_REPLICATES)
ELLIPSE_CHI2_95 = 5.991464547107979  # chi-square quantile, 2 degrees of freedom, 95%: -2 ln(0.05)


def procrustes_rotation(moving: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal matrix R (k x k) minimising ||moving @ R - target||_F: U V^T of the SVD of moving^T target
    (as scipy.linalg.orthogonal_procrustes); no scaling."""
    u, _, vt = np.linalg.svd(moving.T @ target)
    return u @ vt


def draw_units(population: PopulationUnits, seed: int, replicate: int) -> list[np.ndarray]:
    """Replicate `replicate`'s units of each population run, drawn with replacement."""
    generator = np.random.default_rng([seed, replicate])
    return [generator.integers(0, len(run.concept), len(run.concept)) if len(run.concept) else
            np.zeros(0, dtype=np.int64) for run in population.runs]


def stored_replicates(population: PopulationUnits, selection: Selection) -> int | None:
    """The fewest replicate labels stored for an embedded run (None when no embedded run has any)."""
    selected = {run.run_id for run in selection.runs}
    counts = [run.replicates for run in population.runs if run.run_id in selected and run.replicates is not None]
    return min(counts) if counts else None


class EmbeddingUncertainty:
    """Replicates of a PCA embedding and its KMeans clusters (parameters as scikit-learn: work in fit, results in
    attributes ending in _): `covariance_` (models x k x k), `sd_` (models x k), `coassignment_` (models x
    models, diagonal 1), `aligned_` (replicates x models x k)."""

    def __init__(self, replicates: int = DEFAULT_REPLICATES, clusters: int = 3, random_state: int = 0):
        self.replicates = replicates
        self.clusters = clusters
        self.random_state = random_state

    def fit(self, population: PopulationUnits, selection: Selection, normalize: str,
            point: np.ndarray) -> EmbeddingUncertainty:
        from sklearn.cluster import KMeans

        stored = stored_replicates(population, selection)
        if stored is not None and self.replicates > stored:
            raise LceError(
                f"--replicates {self.replicates} is more than the {stored} replicate labels stored for the dissected "
                f"runs embedded (each run keeps its bootstrap's first {stored}): use --replicates {stored} or fewer."
            )
        models, components = point.shape
        aligned = np.empty((self.replicates, models, components))
        together = np.zeros((models, models))
        for replicate in range(self.replicates):
            counts = unit_counts(population, draw_units(population, self.random_state, replicate), replicate)
            values = units_matrix(population, selection, normalize, counts).values
            if values.shape[1] < components:  # zero columns change neither the PCA nor KMeans
                values = np.hstack([values, np.zeros((models, components - values.shape[1]))])
            scores = Projection("pca", components, self.random_state).fit_transform(values)
            aligned[replicate] = scores @ procrustes_rotation(scores, point)
            labels = KMeans(n_clusters=self.clusters, n_init=10, random_state=self.random_state).fit(values).labels_
            together += labels[:, None] == labels[None, :]
        self.aligned_ = aligned
        self.covariance_ = np.stack([np.atleast_2d(np.cov(aligned[:, m, :], rowvar=False, ddof=1))
                                     for m in range(models)])
        self.sd_ = np.sqrt(np.stack([np.diag(c) for c in self.covariance_]))
        self.coassignment_ = together / self.replicates
        return self


def ellipse_axes(covariance: np.ndarray) -> tuple[float, float, float]:
    """(width, height, angle in degrees) of the 95% ellipse of a 2 x 2 covariance (chi-square, 2 degrees of
    freedom), as matplotlib's Ellipse takes them."""
    values, vectors = np.linalg.eigh(covariance)
    values = np.clip(values, 0.0, None)
    width, height = 2.0 * np.sqrt(ELLIPSE_CHI2_95 * values[::-1])
    angle = float(np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1])))
    return float(width), float(height), angle
