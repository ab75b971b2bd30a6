"""The embedding's two steps on a model x concept matrix, as scikit-learn estimators with a fixed seed.

    scores = Projection("pca", components=3, random_state=0).fit_transform(values)   # models x components
    clusters = ModelClusters(3, random_state=0).fit(values)                          # .labels_, .elbow_

lce.analysis.embed runs both on the matrix; lce.analysis.embed_uncertainty runs them again on each replicate.
scikit-learn is imported by fit, so a command that only reads stored embeddings does not load it.
"""

from __future__ import annotations

import numpy as np

MAX_ELBOW_K = 10  # ModelClusters' elbow curve: inertia for k = 1..10 (fewer with fewer models)


class Projection:
    """PCA, metric MDS or t-SNE of the matrix's rows, with scikit-learn's estimators and a fixed seed.

    After fit_transform: `explained_variance_ratio_` and `loadings_` (PCA only, else None).
    """

    def __init__(self, method: str = "pca", components: int = 3, random_state: int = 0):
        self.method = method
        self.components = components
        self.random_state = random_state

    def fit_transform(self, values: np.ndarray) -> np.ndarray:
        self.explained_variance_ratio_ = None
        self.loadings_ = None
        if self.method == "pca":
            from sklearn.decomposition import PCA

            pca = PCA(n_components=self.components, svd_solver="full", random_state=self.random_state)
            scores = pca.fit_transform(values)
            # A component's sign is arbitrary; make its largest-magnitude loading positive (docs/method.md section 3).
            largest = np.abs(pca.components_).argmax(axis=1)
            signs = np.sign(pca.components_[np.arange(self.components), largest])
            signs[signs == 0] = 1.0
            self.loadings_ = pca.components_ * signs[:, None]
            self.explained_variance_ratio_ = pca.explained_variance_ratio_.tolist()
            return scores * signs
        if self.method == "mds":
            from sklearn.manifold import MDS

            mds = MDS(n_components=self.components, random_state=self.random_state, n_init=4,
                      init="random", metric_mds=True)
            return mds.fit_transform(values)
        from sklearn.manifold import TSNE

        # t-SNE needs perplexity < number of samples; the usual 30 is too many for a dozen models.
        perplexity = min(30.0, max(1.0, (len(values) - 1) / 3))
        tsne = TSNE(n_components=self.components, perplexity=perplexity, init="pca",
                    random_state=self.random_state, method="exact")
        return tsne.fit_transform(values)


class ModelClusters:
    """KMeans (n_init=10, fixed seed) over the matrix's rows, with the elbow curve for k = 1..10.

    After fit: `labels_` numbered in order of first appearance (the first model is in cluster 0), `inertia_`
    of the chosen k, and `elbow_` (inertia for k = 1, 2, ... up to 10 or the number of models).
    """

    def __init__(self, clusters: int = 3, random_state: int = 0):
        self.clusters = clusters
        self.random_state = random_state

    def fit(self, values: np.ndarray) -> ModelClusters:
        from sklearn.cluster import KMeans

        def kmeans(k: int) -> KMeans:
            return KMeans(n_clusters=k, n_init=10, random_state=self.random_state).fit(values)

        fitted = kmeans(self.clusters)
        order = {label: rank for rank, label in enumerate(dict.fromkeys(fitted.labels_.tolist()))}
        self.labels_ = np.array([order[label] for label in fitted.labels_])
        self.inertia_ = float(fitted.inertia_)
        self.elbow_ = [float(kmeans(k).inertia_) for k in range(1, min(MAX_ELBOW_K, len(values)) + 1)]
        return self
