"""The engine: the estimators (PCA, UMAP, TSNE), the stages they share, metrics, ``reduce`` and Dask."""
