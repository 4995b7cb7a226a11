"""Adapters onto RAPIDS cuML, imported only when the cuml backend is chosen.

Each adapter maps our parameters onto cuML's so that the same parameters mean the same
fit, refuses clearly (``Unsupported``) what cuML cannot do, pointing to
``backend='cuda'``, and copies the fitted state back onto our estimator so its
attributes look the same on every backend. The ``*_params`` functions are pure (no
cuML import), so the mapping is tested on any machine (tests/test_cuml_adapter.py,
against a stand-in ``cuml`` that records each call).

What the mapping rests on, read in cuML's source (python/cuml/cuml/manifold/ and
cpp/src/{umap,tsne}/, releases 24.x to 26.x):

- **Precomputed kNN.** cuML's graph has the point itself in column 0: 26.08+ raises
  without it, earlier releases skip column 0 in the bandwidth search (so a graph
  without self loses its nearest real neighbour) and read exactly ``n_neighbors``
  columns. Ours excludes self (``engine.stages.check_precomputed``), so the adapters
  prepend column 0 (index ``i``, distance 0) and pass exactly ``n_neighbors`` columns.
  cuML has no marker for a missing neighbour: a graph with -1 entries is refused.
- **t-SNE optimiser.** cuML's step is ``eta * gain * (ex * attraction - repulsion /
  Z)``; ours carries the gradient's factor 4, so cuML's ``eta`` is 4 x our rate. cuML
  runs ``learning_rate`` for the first ``exaggeration_iter`` iterations and twice it
  afterwards (``learning_rate_method='none'``; 'adaptive' would replace rate,
  exaggeration and k). See :func:`cuml_tsne_params` for what maps exactly.
- **Metrics** (dense input; :data:`UMAP_METRICS`, :data:`TSNE_METRICS`).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import numbers
import sys
from typing import Any

import numpy as np
import scipy.sparse as sp

from embedscope._array import to_host
from embedscope.backends import _registry
from embedscope.backends._registry import (
    Backend,
    BackendSpec,
    Capabilities,
    Request,
    Unsupported,
    register,
)

# cuML's "full" solver is an eigendecomposition of the covariance matrix.
_PCA_SOLVERS = {"auto": "auto", "full": "full", "covariance": "full"}
_USE_CUDA = "use backend='cuda' (our kernels) or backend='cpu'"
_NO_PACMAP = "cuML has no PaCMAP (rapidsai/cuml#4726); use backend='cuda' or 'cpu'"

#: Our metric names (and their aliases, as ``kernels.knn.metrics`` spells them) -> cuML's.
_METRIC_NAMES = {
    "euclidean": "euclidean", "l2": "euclidean",
    "cosine": "cosine", "angular": "cosine",
    "manhattan": "manhattan", "l1": "manhattan", "cityblock": "manhattan", "taxicab": "manhattan",
    "chebyshev": "chebyshev", "linf": "chebyshev", "linfinity": "chebyshev", "linfty": "chebyshev",
    "infinity": "chebyshev",
    "minkowski": "minkowski",
    "correlation": "correlation", "pearson": "correlation",
    "hamming": "hamming",
    "jaccard": "jaccard",
    "inner_product": "inner_product", "ip": "inner_product", "dot": "inner_product",
    "precomputed": "precomputed",
}
#: Our metrics cuML's UMAP runs on dense input with ``build_algo='brute_force_knn'``
#: (24.x-26.x: its list is l1/cityblock/taxicab/manhattan, euclidean/l2, sqeuclidean,
#: canberra, minkowski (``metric_kwds={'p': p}``), chebyshev/linf, cosine, correlation,
#: hellinger, hamming; jaccard on sparse input only). Same meaning as ours: cosine and
#: correlation are 1 - cos / 1 - pearson, hamming the share of differing coordinates.
UMAP_METRICS = frozenset({"euclidean", "cosine", "manhattan", "chebyshev", "minkowski", "correlation",
                          "hamming"})
#: Of those, what ``build_algo='nn_descent'`` runs (dense input): euclidean, sqeuclidean, cosine.
UMAP_NND_METRICS = frozenset({"euclidean", "cosine"})
#: Our metrics cuML's t-SNE runs (24.x-26.x: euclidean/l2, sqeuclidean,
#: cityblock/l1/manhattan, minkowski (``metric_params={'p': p}``), chebyshev, cosine,
#: correlation).
TSNE_METRICS = frozenset({"euclidean", "cosine", "manhattan", "chebyshev", "minkowski", "correlation"})
_WHY_NOT = {
    "inner_product": "cuML has no inner-product metric",
    "jaccard": "cuML's jaccard takes sparse input only",
    "hamming": "cuML's t-SNE has no hamming",
    "precomputed": "it does not read X as a distance matrix here; pass precomputed_knn",
}
#: Up to this many points cuML's UMAP searches its kNN graph exactly (brute force), as
#: our cuda backend does; above, NN-descent (euclidean and cosine only: cuML's
#: NN-descent runs no other metric, so they stay exact at every size).
BRUTE_FORCE_MAX = 2_000_000
#: cuML's t-SNE finds at most this many neighbours per point, the point itself included.
TSNE_MAX_NEIGHBORS = 1023
#: First releases with a behaviour the adapters use: UMAP ``init`` arrays (cuml#7651).
UMAP_ARRAY_INIT = (26, 2)


def _cuml_version() -> tuple[int, int] | None:
    """(major, minor) of the cuML that is (or would be) imported, or None if unknown.

    Read from the loaded module when there is one, else from the installed package's
    metadata, so a refusal needs no cuML import.
    """
    module = sys.modules.get("cuml")
    text = getattr(module, "__version__", None) if module is not None else None
    if text is None:
        for dist in ("cuml-cu13", "cuml-cu12", "cuml-cu11", "cuml"):
            try:
                text = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def _metric(est: Any, supported: frozenset[str], reducer: str) -> str:
    """cuML's name for the estimator's metric, or ``Unsupported`` naming what cuML runs."""
    raw = est.metric.lower() if isinstance(est.metric, str) else est.metric
    ours = _METRIC_NAMES.get(raw) if isinstance(raw, str) else None
    if ours not in supported:
        why = f" ({_WHY_NOT[ours]})" if ours in _WHY_NOT else ""
        raise Unsupported(f"cuML's {reducer} runs metric in {', '.join(sorted(supported))}; not "
                          f"metric={est.metric!r}{why}; {_USE_CUDA}")
    return str(ours)


def _minkowski_p(est: Any) -> float:
    kwds = getattr(est, "metric_kwds", None) or {}
    return float(kwds.get("p", 2.0))


def cuml_knn(knn: Any, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Our kNN graph (self excluded) in cuML's layout: column 0 the point itself.

    ``knn`` has passed ``engine.stages.check_precomputed`` (the reducer checks it
    before choosing a backend): a first column that is the point itself is dropped,
    the first ``k`` remaining columns are used, then self (index ``i``, distance 0)
    is prepended, so cuML gets exactly ``min(k, m) + 1`` columns. A graph with a
    missing neighbour (-1, or the point listed again among its neighbours) is
    ``Unsupported``: cuML has no marker for one and would read -1 as an index.

    Returns
    -------
    indices : int64 array (n, min(k, m) + 1)
    distances : float32 array (n, min(k, m) + 1)
    """
    indices, distances = (np.asarray(to_host(part)) for part in knn)
    rows = np.arange(n)
    if indices.shape[1] and np.array_equal(indices[:, 0], rows):
        indices, distances = indices[:, 1:], distances[:, 1:]
    indices, distances = indices[:, :k], distances[:, :k]
    if ((indices < 0) | (indices == rows[:, None])).any():
        raise Unsupported("cuML's kNN graph has no marker for a missing neighbour (-1, or a point "
                          f"listed as its own neighbour); pass a full graph or {_USE_CUDA}")
    return (np.ascontiguousarray(np.hstack([rows[:, None], indices]), dtype=np.int64),
            np.ascontiguousarray(np.hstack([np.zeros((n, 1)), distances]), dtype=np.float32))


# ----------------------------------------------------------------------------- PCA


def cuml_pca_params(est: Any) -> dict[str, Any]:
    """cuML ``PCA`` keyword arguments for our PCA's parameters, or ``Unsupported``."""
    if est.svd_solver not in _PCA_SOLVERS:
        raise Unsupported(f"cuML's PCA has no svd_solver={est.svd_solver!r}; {_USE_CUDA}")
    if est.n_components is not None and not isinstance(est.n_components, numbers.Integral):
        raise Unsupported(f"cuML's PCA needs an integer n_components; {_USE_CUDA}")
    params = {"whiten": bool(est.whiten), "svd_solver": _PCA_SOLVERS[est.svd_solver]}
    if est.n_components is not None:
        params["n_components"] = int(est.n_components)
    return params


def fit_cuml_pca(est: Any, X: Any, backend: Backend) -> None:
    """Fit ``cuml.decomposition.PCA`` and copy its state onto ``est``."""
    from cuml.decomposition import PCA as CumlPCA

    xp = backend.xp
    model = CumlPCA(output_type="cupy", **cuml_pca_params(est))
    with est._progress.stage("pca", f"cuml, {X.shape[0]:,} x {X.shape[1]:,}"):
        model.fit(xp.asarray(X))
    est._cuml_model = model
    est.svd_solver_ = f"cuml:{model.svd_solver}"
    est.n_samples_, est.n_features_in_ = X.shape
    for name in ("components_", "explained_variance_", "explained_variance_ratio_", "singular_values_", "mean_"):
        setattr(est, name, xp.asarray(getattr(model, name)))
    est.n_components_ = int(est.components_.shape[0])
    est.noise_variance_ = float(getattr(model, "noise_variance_", 0.0))


# ----------------------------------------------------------------------------- UMAP


def _seed(random_state: Any) -> int | None:
    if random_state is None or isinstance(random_state, numbers.Integral):
        return None if random_state is None else int(random_state)
    raise Unsupported(f"cuML takes an integer random_state, not {type(random_state).__name__}; {_USE_CUDA}")


def umap_build_algo(metric: str, n_samples: int | None, precomputed: bool) -> tuple[str, str]:
    """cuML UMAP's ``build_algo`` for a fit, and why (for the stage log).

    Set explicitly because cuML's ``'auto'`` depends on the release and on
    ``random_state`` (a seeded 'auto' is brute force at any size; an unseeded one
    switches to NN-descent above 50,000 points). The rule here is our cuda backend's:
    exact (``'brute_force_knn'``) up to :data:`BRUTE_FORCE_MAX` points,
    ``'nn_descent'`` above for euclidean and cosine; exact at every size for the
    other metrics (cuML's NN-descent runs no other) and with a precomputed graph
    (nothing is searched; brute force admits every metric).
    """
    if precomputed:
        return "brute_force_knn", "precomputed_knn given: no search"
    if metric not in UMAP_NND_METRICS:
        return "brute_force_knn", f"exact: cuML's NN-descent has no metric={metric!r}"
    if n_samples is None or n_samples <= BRUTE_FORCE_MAX:
        return "brute_force_knn", f"exact up to {BRUTE_FORCE_MAX:,} points"
    return "nn_descent", f"approximate above {BRUTE_FORCE_MAX:,} points"


def cuml_umap_params(est: Any, n_samples: int | None = None, *, supervised: bool = False) -> dict[str, Any]:
    """cuML ``UMAP`` keyword arguments for our UMAP's parameters, or ``Unsupported``.

    ``n_neighbors`` counts the point itself in both libraries; ``n_epochs=None`` is
    resolved here by our rule (umap-learn's, which cuML follows), and ``n_epochs=0``
    is refused (cuML reads 0 as "choose for me"). ``build_algo`` is explicit
    (:func:`umap_build_algo`). A precomputed graph goes through :func:`cuml_knn`.
    ``init`` arrays reach cuML from 26.02 (earlier releases take 'spectral' or
    'random'); the estimator has checked their shape and values. Refused: another
    init name, a callback, densMAP, metrics cuML lacks (:data:`UMAP_METRICS`).
    """
    from embedscope.kernels.umap_sgd import default_epochs

    metric = _metric(est, UMAP_METRICS, "UMAP")
    if isinstance(est.init, str):
        if est.init not in ("spectral", "random"):
            raise Unsupported(f"cuML's UMAP supports init='spectral', 'random' or an array; {_USE_CUDA}")
        init: Any = est.init
    else:
        version = _cuml_version()
        if version is not None and version < UMAP_ARRAY_INIT:
            raise Unsupported(f"cuML {version[0]}.{version[1]:02d}'s UMAP supports init='spectral' or "
                              f"'random' only (an init array needs cuML >= 26.02); {_USE_CUDA}")
        init = np.ascontiguousarray(to_host(est.init), dtype=np.float32)
    if est.callback is not None:
        raise Unsupported(f"cuML's UMAP does not call Python epoch callbacks; {_USE_CUDA}")
    if getattr(est, "densmap", False) or getattr(est, "output_dens", False):
        raise Unsupported(f"cuML's UMAP has no densMAP (densmap / output_dens); {_USE_CUDA}")
    if est.n_epochs is not None and int(est.n_epochs) == 0:
        raise Unsupported(f"cuML's UMAP reads n_epochs=0 as 'choose for me' (ours returns the "
                          f"initial layout); {_USE_CUDA}")
    if est.n_epochs is not None:
        n_epochs: int | None = int(est.n_epochs)
    else:
        n_epochs = default_epochs(n_samples) if n_samples is not None else None
    precomputed = est.precomputed_knn is not None
    build_algo, _ = umap_build_algo(metric, n_samples, precomputed)
    params: dict[str, Any] = {
        "n_neighbors": est.n_neighbors,
        "n_components": est.n_components,
        "min_dist": est.min_dist,
        "spread": est.spread,
        "metric": metric,
        "n_epochs": n_epochs,
        "learning_rate": est.learning_rate,
        "init": init,
        "negative_sample_rate": est.negative_sample_rate,
        "random_state": _seed(est.random_state),
        "build_algo": build_algo,
        "verbose": bool(est.verbose),
    }
    if metric == "minkowski":
        params["metric_kwds"] = {"p": _minkowski_p(est)}
    if build_algo == "nn_descent":
        # cuML raises a degree below n_neighbors itself, with a warning; set it here.
        degree = max(64, int(est.n_neighbors))
        params["build_kwds"] = {"nnd_graph_degree": degree, "nnd_intermediate_graph_degree": 2 * degree}
    if precomputed:
        if n_samples is None:
            n_samples = int(np.shape(est.precomputed_knn[0])[0])
        params["precomputed_knn"] = cuml_knn(est.precomputed_knn, n_samples, int(est.n_neighbors) - 1)
    # The target settings go to cuML only with a target: an unsupervised call stays the
    # call cuML documents for it.
    for name in ("target_metric", "target_weight", "target_n_neighbors") if supervised else ():
        if hasattr(est, name):
            value = getattr(est, name)
            params[name] = "euclidean" if name == "target_metric" and value == "l2" else value
    return params


def _cuml_target(y: Any, metric: str) -> np.ndarray:
    """``y`` as cuML's UMAP reads it: one float32 column; labels become codes, -1 stays -1."""
    y = np.asarray(to_host(y))
    if metric == "categorical":
        flat = y.reshape(len(y), -1)
        if flat.shape[1] != 1:
            raise Unsupported(f"cuML's UMAP takes one label per point; {_USE_CUDA}")
        flat = flat[:, 0]
        unlabelled = (flat == -1) if flat.dtype.kind in "biuf" else np.zeros(len(flat), dtype=bool)
        codes = np.full(len(flat), -1.0, dtype=np.float32)
        if (~unlabelled).any():
            codes[~unlabelled] = np.unique(flat[~unlabelled], return_inverse=True)[1]
        return codes
    if y.ndim == 2 and y.shape[1] != 1:
        raise Unsupported(f"cuML's UMAP takes a 1-D numeric target (y has {y.shape[1]} columns); {_USE_CUDA}")
    return np.ascontiguousarray(y.reshape(-1), dtype=np.float32)


def _umap_graph(graph: Any) -> sp.csr_matrix | None:
    """cuML's fuzzy graph (scipy or cupyx COO, by release) as our host float32 CSR."""
    if graph is None:
        return None
    if not sp.issparse(graph) and hasattr(graph, "get"):
        graph = graph.get()  # cupyx.scipy.sparse -> scipy.sparse
    csr = sp.csr_matrix(graph, dtype=np.float32)
    csr.sum_duplicates()
    return csr


def fit_cuml_umap(est: Any, X: Any, backend: Backend, y: Any = None) -> Any:
    """Fit ``cuml.manifold.UMAP``; returns the embedding (cupy) and keeps the model.

    The parameters are mapped (and refused, if need be) before cuML is imported, so
    a refusal reads the same whether or not cuML loads. ``y`` (supervised UMAP) goes
    to cuML's ``fit_transform(X, y)`` with the estimator's ``target_metric``,
    ``target_weight`` and ``target_n_neighbors``. ``graph_`` is set as our host CSR.
    """
    n = int(X.shape[0])
    params = cuml_umap_params(est, n, supervised=y is not None)
    target = None
    if y is not None:
        metric = params.get("target_metric", "categorical")
        if "precomputed_knn" in params and metric != "categorical":
            raise Unsupported(f"cuML's UMAP takes no precomputed_knn with target_metric={metric!r}; "
                              f"{_USE_CUDA}")
        target = _cuml_target(y, metric)
    _, why = umap_build_algo(params["metric"], n, "precomputed_knn" in params)
    log = est._progress.log
    log(f"cuml-umap: build_algo={params['build_algo']} ({why})")
    if params["random_state"] is None:
        log("cuml-umap: no random_state: parallel epochs, not reproducible")
    else:
        log(f"cuml-umap: random_state={params['random_state']}: cuML runs deterministic (slower, "
            "more memory) epochs" + ("; its NN-descent graph is not deterministic"
                                     if params["build_algo"] == "nn_descent" else ""))
    from cuml.manifold import UMAP as CumlUMAP

    # The release is certain only now (a refusal read the package metadata, if any).
    version = _cuml_version()
    if not isinstance(params["init"], str) and version is not None and version < UMAP_ARRAY_INIT:
        raise Unsupported(f"cuML {version[0]}.{version[1]:02d}'s UMAP supports init='spectral' or "
                          f"'random' only (an init array needs cuML >= 26.02); {_USE_CUDA}")

    model = CumlUMAP(output_type="cupy", **params)
    with est._progress.stage("cuml-umap", f"{n:,} x {X.shape[1]:,}"):
        xp_X = backend.xp.asarray(X)
        embedding = model.fit_transform(xp_X) if target is None else model.fit_transform(xp_X, target)
    est._cuml_model = model
    est.graph_ = _umap_graph(getattr(model, "graph_", None))
    return embedding


# ----------------------------------------------------------------------------- t-SNE


def tsne_rates(est: Any, n_samples: int) -> tuple[int, float, float, float]:
    """Our t-SNE schedule and what cuML runs for it, in our units.

    Returns ``(exaggeration_iter, ours_exaggerating, ours_normal, cuml_normal)``: the
    rates of our two phases (``TSNE._schedule``) and the normal-phase rate cuML will
    run, which is twice its exaggeration-phase rate (see :func:`cuml_tsne_params`).
    """
    ee_iter, lr_ee, lr_normal = est._schedule(n_samples)
    cuml_normal = lr_normal if ee_iter == 0 else 2.0 * lr_ee
    return ee_iter, lr_ee, lr_normal, cuml_normal


def cuml_tsne_params(est: Any, n_samples: int, accepted: set[str] | None = None) -> dict[str, Any]:
    """cuML ``TSNE`` keyword arguments for our TSNE's parameters, or ``Unsupported``.

    What maps exactly:

    - the exaggeration phase: ``early_exaggeration``, its length
      (``exaggeration_iter`` = our ``min(250, n_iter // 4)``), momentum 0.5 then 0.8,
      ``late_exaggeration=1``, and its rate: cuML's ``learning_rate`` = 4 x ours (its
      step lacks the gradient's factor 4; ``learning_rate_method='none'``, so cuML
      does not replace rate, exaggeration or k);
    - the iterations: ``max_iter`` (``n_iter`` before 26.02, picked from ``accepted``,
      the constructor's parameter names) and ``min_grad_norm=0``, which switches off
      cuML's only early stop (ours never stops early);
    - the neighbours: ``n_neighbors`` = our k (3 x perplexity) + 1, because cuML's
      graph holds the point itself in column 0 (its own search finds it, and
      :func:`cuml_knn` prepends it to a given graph); perplexity clamped to
      ``(n - 1) / 3`` as on the other backends;
    - the distances: ``square_distances`` only for euclidean (ours squares euclidean
      distances only; cuML's default squares every metric, cosine included).

    What does not: cuML runs the normal phase at twice its exaggeration-phase rate,
    ours at its own (``learning_rate='auto'``: N/4 against N/(4 x exaggeration));
    ``fit_cuml_tsne`` sets cuML's post-exaggeration rate directly where the release
    keeps it as an attribute (24.x) and otherwise logs the rate that ran
    (``learning_rate_``). cuML also keeps gains and momentum across the phase switch
    (ours restarts them) and gives the point itself weight in the perplexity search.
    Refused: 3-D, dof != 1, init arrays (cuML's t-SNE has none, 24.x-26.x), callbacks,
    more than 1023 neighbours, metrics cuML lacks (:data:`TSNE_METRICS`).
    """
    if est.n_components != 2:
        raise Unsupported(f"cuML's t-SNE is 2-D only (n_components={est.n_components}); {_USE_CUDA}")
    metric = _metric(est, TSNE_METRICS, "t-SNE")
    if est.dof != 1.0:
        raise Unsupported(f"cuML's t-SNE has no heavy-tail dof parameter (dof={est.dof}); {_USE_CUDA}")
    if not (isinstance(est.init, str) and est.init in ("pca", "random")):
        raise Unsupported(f"cuML's t-SNE supports init='pca' or 'random' only (no init arrays); {_USE_CUDA}")
    if est.callback is not None:
        raise Unsupported(f"cuML's t-SNE does not call Python callbacks; {_USE_CUDA}")
    k = est._neighbours(n_samples)  # 3 x the clamped perplexity, self excluded
    knn = None
    if est.precomputed_knn is not None:
        knn = cuml_knn(est.precomputed_knn, n_samples, k)
        k = knn[0].shape[1] - 1
    if k + 1 > TSNE_MAX_NEIGHBORS:
        raise Unsupported(f"cuML's t-SNE uses at most {TSNE_MAX_NEIGHBORS} neighbours, itself included "
                          f"(3 x perplexity + 1 = {k + 1}); use perplexity <= "
                          f"{(TSNE_MAX_NEIGHBORS - 1) // 3} or {_USE_CUDA}")
    ee_iter, lr_ee, lr_normal, _ = tsne_rates(est, n_samples)
    iterations = "max_iter" if accepted is None or "max_iter" in accepted else "n_iter"
    params: dict[str, Any] = {
        "n_components": 2,
        "perplexity": min(float(est.perplexity), (n_samples - 1) / 3.0),
        "n_neighbors": k + 1,
        "early_exaggeration": float(est.early_exaggeration),
        "late_exaggeration": 1.0,
        "exaggeration_iter": ee_iter,
        "pre_momentum": 0.5,
        "post_momentum": 0.8,
        # With no exaggeration phase cuML switches to twice its rate at iteration 0.
        "learning_rate": 4.0 * lr_ee if ee_iter > 0 else 2.0 * lr_normal,
        "learning_rate_method": "none",
        iterations: int(est.n_iter),
        "min_grad_norm": 0.0,
        "metric": metric,
        "square_distances": metric == "euclidean",
        "init": est.init,
        "random_state": _seed(est.random_state),
        "method": "fft",
        "verbose": bool(est.verbose),
    }
    if metric == "minkowski":
        params["metric_params"] = {"p": _minkowski_p(est)}
    if knn is not None:
        params["precomputed_knn"] = knn
    return params


def _constructor_parameters(cls: Any) -> set[str] | None:
    """The parameter names of a cuML constructor; from the release if it has no signature.

    ``max_iter`` replaced ``n_iter`` in 26.02 (deprecated in 25.12, cuml#7500).
    """
    try:
        return set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        version = _cuml_version()
        return None if version is None or version >= (25, 12) else {"n_iter"}


def fit_cuml_tsne(est: Any, X: Any, backend: Backend) -> Any:
    """Fit ``cuml.manifold.TSNE``; returns the embedding (cupy) and keeps the model.

    The parameters are checked (and refused, if need be) before cuML is imported, so
    a refusal reads the same whether or not cuML loads. Sets ``n_iter_`` from cuML's
    count of iterations run (its ``n_iter_``: counted since 25.10, the requested
    number before, which is exact there as ``min_grad_norm=0`` stops nothing),
    ``learning_rate_`` (the normal-phase rate that ran, in our units),
    ``kl_divergence_`` and ``repulsion_``.
    """
    n = int(X.shape[0])
    cuml_tsne_params(est, n)
    from cuml.manifold import TSNE as CumlTSNE

    params = cuml_tsne_params(est, n, _constructor_parameters(CumlTSNE))
    ee_iter, _, lr_normal, cuml_normal = tsne_rates(est, n)
    model = CumlTSNE(output_type="cupy", **params)
    if "post_learning_rate" in getattr(model, "__dict__", {}) and ee_iter > 0:
        # 24.x reads the post-exaggeration rate from this attribute at fit: set it exactly.
        model.post_learning_rate = 4.0 * lr_normal
        cuml_normal = lr_normal
    if not np.isclose(cuml_normal, lr_normal):
        est._progress.log(f"cuml-tsne: cuML runs the normal phase at twice its exaggeration rate: "
                          f"lr={cuml_normal:.4g} where ours runs {lr_normal:.4g}")
    with est._progress.stage("cuml-tsne", f"{n:,} x {X.shape[1]:,}, k={params['n_neighbors'] - 1}"):
        embedding = model.fit_transform(backend.xp.asarray(X))
    est._cuml_model = model
    requested = int(params.get("max_iter", params.get("n_iter", est.n_iter)))
    est.n_iter_ = int(getattr(model, "n_iter_", requested))
    est.learning_rate_ = float(cuml_normal)
    est.kl_divergence_ = float(np.asarray(getattr(model, "kl_divergence_", np.nan)))
    est.repulsion_ = "fft"
    est.repulsion_reason_ = "cuML's t-SNE (FFT)"
    return embedding


# ----------------------------------------------------------------------------- delegate


def refusal(request: Request) -> str | None:
    """Why cuML cannot fit ``request`` (its estimator's parameters), or None.

    The parameter mapping is pure, so this runs (and is tested) without cuML.
    """
    if request.reducer == "pacmap":
        return _NO_PACMAP
    est = request.estimator
    if est is None:
        return None
    try:
        if request.reducer == "pca":
            cuml_pca_params(est)
        elif request.reducer == "umap":
            cuml_umap_params(est, request.n_samples or None)
        elif request.reducer == "tsne":
            cuml_tsne_params(est, request.n_samples)
    except Unsupported as exc:
        return str(exc)
    return None


def fit_pca(est: Any, X: Any, backend: Backend) -> None:
    """The delegate entry for PCA (see :class:`embedscope.backends.BackendSpec`)."""
    fit_cuml_pca(est, X, backend)


def fit_umap(est: Any, X: Any, backend: Backend, y: Any = None) -> Any:
    """The delegate entry for UMAP; ``y`` is the target of a supervised fit, or None."""
    return fit_cuml_umap(est, X, backend, y)


def fit_tsne(est: Any, X: Any, backend: Backend) -> Any:
    """The delegate entry for t-SNE."""
    return fit_cuml_tsne(est, X, backend)


INSTALL_HINT = "conda install -c rapidsai -c conda-forge cuml  (or: pip install 'embedscope[cuml]')"

CAPABILITIES = Capabilities(
    reducers=frozenset({"pca", "umap", "tsne"}),
    metrics=UMAP_METRICS | TSNE_METRICS,
    knn_methods=frozenset({"auto"}),
    # cuML's t-SNE has no transform.
    transform=frozenset({"pca", "umap"}),
    callback=False,
    # cuML's UMAP takes a target (fit(X, y)); it has no densMAP.
    umap_options=frozenset({"supervised"}),
    hints={"transform=tsne": "cuML's t-SNE cannot place new points (it has no transform); fit with "
                             "backend='cuda' or backend='cpu' to use transform",
           "reducer=pacmap": _NO_PACMAP},
)


def _self() -> Any:
    return sys.modules[__name__]


register(BackendSpec(name="cuml", priority=30, probe=lambda: _registry.probe_cuml(),
                     capabilities=CAPABILITIES, array_module=lambda: _registry.device_xp(),
                     delegate=_self, install_hint=INSTALL_HINT, gpu=True))
