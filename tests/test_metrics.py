"""kNN, k-means and the retrieval/clustering metrics: hand-built, brute force, sklearn, golden case 6."""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings

import faiss
import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from dcml_core.evaluation import (
    compute_metrics,
    f1_score_clusters,
    faiss_gpu_available,
    kmeans,
    knn,
    map_at_r,
    map_c,
    nmi,
    recall_at_k,
)
from dcml_core.evaluation import metrics as metrics_module
from tests.golden import load_golden

BACKENDS = ("faiss", "faiss_symmetric", "torch")


# ----------------------------------------------------------------------------- brute-force references
def brute_force_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and float64 squared distances, ordered by (distance, index), query excluded."""
    x = x.astype(np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)  # (N, N)
    np.fill_diagonal(d, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(x)), d.shape), d), axis=-1)[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


def naive_map_c(knn_labels: np.ndarray, labels: np.ndarray) -> float:
    aps = []
    for i, lab in enumerate(labels):
        f = int((labels == lab).sum())  # includes the query
        hits, ap = 0, 0.0
        for rank in range(1, f + 1):
            if knn_labels[i, rank - 1] == lab:
                hits += 1
                ap += hits / rank
        aps.append(ap / f)
    return float(np.mean(aps))


def naive_map_at_r(knn_labels: np.ndarray, labels: np.ndarray) -> float:
    aps = []
    for i, lab in enumerate(labels):
        r = int((labels == lab).sum()) - 1
        if r == 0:
            continue
        rel = knn_labels[i, :r] == lab
        aps.append(sum(rel[: j + 1].sum() / (j + 1) for j in range(r) if rel[j]) / r)
    return float(np.mean(aps))


def naive_pair_f1(clusters: np.ndarray, labels: np.ndarray) -> float:
    tp = same_cluster = same_class = 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        same_cluster += clusters[i] == clusters[j]
        same_class += labels[i] == labels[j]
        tp += (clusters[i] == clusters[j]) and (labels[i] == labels[j])
    p, r = tp / same_cluster, tp / same_class
    return 2 * p * r / (p + r)


def clustered(n: int, d: int, n_classes: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    x = rng.standard_normal((n_classes, d))[labels] + noise * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


# ----------------------------------------------------------------------------- kNN
@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_points_on_a_line(backend: str) -> None:
    x = np.array([[0.0], [1.0], [3.0], [7.0], [15.0]], dtype=np.float32)
    expected = np.array([[1, 2], [0, 2], [1, 0], [2, 1], [3, 2]])
    np.testing.assert_array_equal(knn(x, 2, backend=backend), expected)
    with_self = knn(x, 2, exclude_self=False, backend=backend)
    np.testing.assert_array_equal(with_self[:, 0], np.arange(5))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64])
def test_knn_matches_brute_force_without_ties(backend: str, chunk_size: int | None) -> None:
    x, _ = clustered(150, 12, 10, seed=0)
    expected, _ = brute_force_knn(x, 9)
    got = knn(torch.from_numpy(x), 9, chunk_size=chunk_size, backend=backend)
    assert got.dtype == np.int64 and got.shape == (150, 9)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_knn_with_ties_and_duplicates(backend: str, chunk_size: int | None) -> None:
    rng = np.random.default_rng(1)
    grid = rng.integers(0, 5, size=(60, 3)).astype(np.float32)  # exact duplicates and many equal distances
    x = np.concatenate([grid, np.repeat(grid[:1], 8, axis=0)])  # one point with 9+ exact copies
    k = 6
    ref_idx, ref_dist = brute_force_knn(x, k)
    got = knn(x, k, chunk_size=chunk_size, backend=backend)
    n = len(x)
    assert not (got == np.arange(n)[:, None]).any(), "the query itself must never be its own neighbour"
    assert all(len(set(row)) == k for row in got), "no neighbour may repeat"
    got_dist = ((x[:, None, :].astype(np.float64) - x[got].astype(np.float64)) ** 2).sum(-1)  # (N, k), exact
    np.testing.assert_array_equal(got_dist, ref_dist)  # the right neighbours up to ties, in distance order
    same_dist = got_dist[:, 1:] == got_dist[:, :-1]
    assert (got[:, 1:][same_dist] > got[:, :-1][same_dist]).all(), "ties must come in index order"
    d_full = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).astype(np.float64)
    np.fill_diagonal(d_full, np.inf)
    boundary_tie = np.sort(d_full, axis=1)[:, k] == ref_dist[:, -1]
    assert 0 < boundary_tie.sum() < n and same_dist[~boundary_tie].any(), "the data must exercise both cases"
    np.testing.assert_array_equal(got[~boundary_tie], ref_idx[~boundary_tie])  # no tie at k: exact indices
    np.testing.assert_array_equal(got, knn(x, k, chunk_size=chunk_size, backend=backend))  # deterministic


def test_knn_chunked_equals_unchunked_and_backends_agree() -> None:
    x, _ = clustered(500, 32, 20, seed=2)
    full = knn(x, 10, chunk_size=500)
    np.testing.assert_array_equal(knn(x, 10, chunk_size=13), full)
    np.testing.assert_array_equal(knn(x, 10, chunk_size=13, backend="torch"), full)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 150, None])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_knn_symmetric_blocks_match_brute_force(chunk_size: int | None, exclude_self: bool) -> None:
    x, _ = clustered(150, 12, 10, seed=3)
    got = knn(x, 9, chunk_size=chunk_size, exclude_self=exclude_self, backend="faiss_symmetric")
    if exclude_self:
        expected = brute_force_knn(x, 9)[0]
    else:  # the query itself first (distance 0), then its 8 nearest others
        expected = np.concatenate([np.arange(150)[:, None], brute_force_knn(x, 8)[0]], axis=1)
    np.testing.assert_array_equal(got, expected)


def test_knn_symmetric_equals_faiss_index_on_blas_sized_input() -> None:
    # 5,000 x 64 takes faiss's BLAS path (4,096-query blocks, 1,024-vector database blocks): the first query
    # block uses the very same sgemm calls, later blocks reuse transposed products (equal up to rounding).
    x = np.random.default_rng(4).standard_normal((5000, 64), dtype=np.float32)
    sym, ref = knn(x, 10, backend="faiss_symmetric"), knn(x, 10, backend="faiss")
    np.testing.assert_array_equal(sym[:4096], ref[:4096])
    assert (sym != ref).any(axis=1).sum() <= 5  # near-ties only (distances equal to float32 rounding)


def test_knn_auto_uses_symmetric_above_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    knn_module = __import__("sys").modules["dcml_core.evaluation.knn"]
    calls: list[int] = []
    original = knn_module._knn_faiss_symmetric

    def counting(x, k, block, exclude_self):
        calls.append(block)
        return original(x, k, block, exclude_self)

    monkeypatch.setattr(knn_module, "_knn_faiss_symmetric", counting)
    x, _ = clustered(120, 6, 4, seed=5)
    np.testing.assert_array_equal(knn(x, 5, chunk_size=50), knn(x, 5, backend="faiss"))
    knn(x, 5)  # 120 points fit one default block: plain IndexFlatL2 search
    assert calls == [50]


def test_compute_metrics_same_with_symmetric_and_index_knn(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = clustered(4500, 32, 30, seed=10, noise=2.0)  # > one 4,096 block: auto picks faiss_symmetric
    fast = compute_metrics(x, labels, metrics=("recall", "map_c", "map@r"))

    def index_knn(emb, k, **kw):
        return knn(emb, k, backend="faiss")

    monkeypatch.setattr(metrics_module, "knn", index_knn)
    assert compute_metrics(x, labels, metrics=("recall", "map_c", "map@r")) == fast


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((5, 2, 1), np.float32), 2), "2-D"),
        ((np.zeros((5, 2), np.float32), 5), r"\[1, 4\]"),
        ((np.zeros((5, 2), np.float32), 0), r"\[1, 4\]"),
    ],
)
def test_knn_rejects_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        knn(*args)
    with pytest.raises(ValueError, match="backend"):
        knn(np.zeros((5, 2), np.float32), 2, backend="annoy")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- retrieval metrics
def test_recall_hand_built() -> None:
    labels = np.array([0, 0, 1, 1, 2])
    knn_labels = np.array([[0, 1, 1], [1, 0, 2], [0, 2, 0], [1, 0, 0], [0, 1, 1]])
    # hits at rank: q0 1, q1 2, q2 never, q3 1, q4 never (singleton class counts as a miss)
    assert recall_at_k(knn_labels, labels, (1, 2, 3)) == {1: 2 / 5, 2: 3 / 5, 3: 3 / 5}
    with pytest.raises(ValueError, match="recall@4"):
        recall_at_k(knn_labels, labels, (4,))


def test_map_c_and_map_at_r_hand_built() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    knn_labels = np.array(
        [
            [0, 1, 0, 2, 1],  # f=3: AP_c=(1/1 + 2/3)/3 ; R=2: AP@R=(1/1)/2
            [1, 0, 0, 2, 1],  # f=3: (1/2 + 2/3)/3 ; R=2: (1/2)/2
            [1, 2, 1, 0, 0],  # f=3: 0 ; R=2: 0
            [1, 0, 0, 0, 0],  # f=2: (1/1)/2 ; R=1: 1
            [0, 1, 0, 0, 0],  # f=2: (1/2)/2 ; R=1: 0
            [0, 0, 1, 1, 0],  # f=1: 0 ; R=0: skipped
        ]
    )
    ap_c = [(1 + 2 / 3) / 3, (1 / 2 + 2 / 3) / 3, 0.0, 1 / 2, 1 / 4, 0.0]
    ap_r = [1 / 2, 1 / 4, 0.0, 1.0, 0.0]
    assert map_c(knn_labels, labels) == pytest.approx(np.mean(ap_c), abs=1e-15)
    assert map_at_r(knn_labels, labels) == pytest.approx(np.mean(ap_r), abs=1e-15)
    assert np.isnan(map_at_r(np.zeros((3, 1), np.int64), np.array([0, 1, 2])))  # all singletons


def test_retrieval_metrics_match_naive_loops() -> None:
    x, labels = clustered(240, 16, 24, seed=3, noise=1.5)
    k = int(np.bincount(labels).max())
    knn_labels = labels[brute_force_knn(x, k)[0]]
    np.testing.assert_allclose(map_c(knn_labels, labels), naive_map_c(knn_labels, labels), rtol=0, atol=1e-14)
    np.testing.assert_allclose(map_at_r(knn_labels, labels), naive_map_at_r(knn_labels, labels), atol=1e-14)
    for kk, v in recall_at_k(knn_labels, labels, (1, 3, 8)).items():
        assert v == np.mean([labels[i] in knn_labels[i, :kk] for i in range(len(labels))])


def test_retrieval_metrics_reject_mismatched_knn_labels() -> None:
    with pytest.raises(ValueError, match=r"one row per label, got \(3, 2\) for 4 labels"):
        map_c(np.zeros((3, 2), np.int64), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="one row per label"):
        recall_at_k(np.zeros(4, np.int64), np.zeros(4, np.int64), (1,))


def test_compute_metrics_single_class_caps_k() -> None:
    x, _ = clustered(12, 4, 3, seed=10)
    out = compute_metrics(x, np.zeros(12, np.int64))  # largest class = N: only N-1 neighbours exist
    assert out["map_c"] == pytest.approx(11 / 12)  # every retrieved item relevant, f = 12 includes the query
    assert out["map@r"] == 1.0 and out["recall@8"] == 1.0 and out["nmi"] == 1.0 and out["f1"] == 1.0


# ----------------------------------------------------------------------------- clustering metrics
def test_f1_hand_built_and_brute_force() -> None:
    # same-cluster pairs 2, same-class pairs 3, TP 1 -> P=1/2, R=1/3, F1=0.4
    assert f1_score_clusters(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])) == pytest.approx(0.4, abs=1e-15)
    assert f1_score_clusters(np.array([5, 5, 9, 9]), np.array([1, 1, 2, 2])) == 1.0
    assert f1_score_clusters(np.array([0, 1, 2]), np.array([0, 0, 0])) == 0.0  # no TP: 0, not 0/0
    rng = np.random.default_rng(4)
    clusters, labels = rng.integers(0, 7, 120), rng.integers(0, 9, 120)
    expected = naive_pair_f1(clusters, labels)
    assert f1_score_clusters(clusters, labels) == pytest.approx(expected, abs=1e-14)
    assert f1_score_clusters(clusters * 13 + 100, labels) == pytest.approx(
        expected, abs=1e-14
    )  # ids irrelevant


def test_nmi_matches_sklearn() -> None:
    """The contingency-count NMI equals scikit-learn's (the reference's) on random partitions of any size, on equal
    partitions and on its edge conventions (one group on both sides: 1.0; on one side only: 0.0)."""
    rng = np.random.default_rng(5)
    for case in range(400):
        n = int(rng.integers(1, 250))
        clusters, labels = rng.integers(0, int(rng.integers(1, 30)), n), rng.integers(0, int(rng.integers(1, 30)), n)
        if case % 5 == 0:
            labels = clusters * 7 + 3  # the same partition under other ids
        if case % 11 == 0:
            clusters = np.zeros(n, dtype=np.int64)
        expected = normalized_mutual_info_score(clusters, labels, average_method="arithmetic")
        assert nmi(clusters, labels) == pytest.approx(expected, abs=1e-12), (case, n)
    assert nmi(np.array([3, 3, 7, 7]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert nmi(np.zeros(5), np.zeros(5)) == 1.0 and nmi(np.zeros(4), np.array([0, 1, 0, 1])) == 0.0
    with pytest.raises(ValueError, match="equal length"):
        nmi(np.zeros(3), np.zeros(4))


def test_nmi_needs_no_scikit_learn() -> None:
    """A trial's evaluation does not import scikit-learn (a second of CPU per trial before its first result)."""
    code = (
        "import sys, numpy as np; from dcml_core.metrics import nmi; "
        "nmi(np.arange(10) % 3, np.arange(10) % 2); print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_kmeans_assigns_nearest_centroid_and_is_deterministic() -> None:
    x, _ = clustered(300, 8, 6, seed=6)
    centroids, assign = kmeans(x, 6)
    assert centroids.shape == (6, 8) and assign.shape == (300,) and assign.dtype == np.int64
    d = ((x[:, None, :].astype(np.float64) - centroids[None].astype(np.float64)) ** 2).sum(-1)
    assert (d[np.arange(300), assign] <= d.min(axis=1) + 1e-6).all()
    c2, a2 = kmeans(torch.from_numpy(x), 6)
    np.testing.assert_array_equal(c2, centroids)
    np.testing.assert_array_equal(a2, assign)
    with pytest.raises(ValueError, match=r"\[1, N=300\]"):
        kmeans(x, 301)


@pytest.mark.skipif(faiss_gpu_available(), reason="checks the CPU fallback; faiss sees a GPU here")
def test_kmeans_gpu_request_falls_back_to_cpu_with_warning() -> None:
    x, _ = clustered(100, 4, 3, seed=7)
    with pytest.warns(UserWarning, match="running on the CPU"):
        centroids, assign = kmeans(x, 3, gpu=True)
    np.testing.assert_array_equal(assign, kmeans(x, 3)[1])


# ----------------------------------------------------------------------------- compute_metrics
def test_compute_metrics_shares_one_knn_and_one_kmeans(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = clustered(200, 16, 10, seed=8)
    calls: dict[str, list] = {"knn": [], "kmeans": []}

    def counting_knn(emb, k, **kw):
        calls["knn"].append(k)
        return knn(emb, k, **kw)

    def counting_kmeans(emb, k, **kw):
        calls["kmeans"].append(k)
        return kmeans(emb, k, **kw)

    monkeypatch.setattr(metrics_module, "knn", counting_knn)
    monkeypatch.setattr(metrics_module, "kmeans", counting_kmeans)
    out = compute_metrics(x, labels)
    largest = int(np.bincount(labels).max())
    assert calls == {"knn": [max(8, largest)], "kmeans": [10]}  # nmi_k defaults to the distinct labels
    assert list(out) == ["recall@1", "recall@2", "recall@4", "recall@8", "nmi", "f1", "map_c", "map@r"]
    knn_labels = labels[brute_force_knn(x, largest)[0]]
    _, clusters = kmeans(x, 10)
    expected = {f"recall@{k}": v for k, v in recall_at_k(knn_labels, labels, (1, 2, 4, 8)).items()}
    expected.update(nmi=nmi(clusters, labels), f1=f1_score_clusters(clusters, labels))
    expected.update({"map_c": map_c(knn_labels, labels), "map@r": map_at_r(knn_labels, labels)})
    assert out == expected
    assert all(type(v) is float for v in out.values())


def test_compute_metrics_options_and_inputs() -> None:
    x, labels = clustered(120, 8, 6, seed=9)
    sub = compute_metrics(
        torch.from_numpy(x), torch.from_numpy(labels), recall_ks=(1, 10), metrics=("recall",)
    )
    assert list(sub) == ["recall@1", "recall@10"]
    assert sub == {
        k: v
        for k, v in compute_metrics(x.astype(np.float64), labels, recall_ks=(1, 10)).items()
        if k.startswith("recall")
    }
    assert compute_metrics(x, labels, metrics=("nmi",), nmi_k=12) != compute_metrics(
        x, labels, metrics=("nmi",)
    )


def test_compute_metrics_threads_do_not_change_results_and_are_restored() -> None:
    x, labels = clustered(4200, 16, 40, seed=11, noise=2.0)  # > 4,096 points: threads picked automatically
    before = faiss.omp_get_max_threads()
    auto = compute_metrics(x, labels)
    assert faiss.omp_get_max_threads() == before
    for threads in (1, 2):
        assert compute_metrics(x, labels, num_threads=threads) == auto
        assert faiss.omp_get_max_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        compute_metrics(x, labels, num_threads=0)
    cores = len(__import__("os").sched_getaffinity(0))
    assert all(1 <= metrics_module.idle_cores(0.02) <= cores for _ in range(3))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"embeddings": np.full((10, 2), np.nan, np.float32)}, "NaN"),
        ({"embeddings": np.zeros(10, np.float32)}, "2-D"),
        ({"embeddings": np.zeros((10, 2), np.complex64)}, "real numbers"),
        ({"labels": np.zeros(3, np.int64)}, "3 entries but embeddings has 10"),
        ({"labels": np.zeros(10, np.float32)}, "integer"),
        ({"metrics": ("recall", "ndcg")}, "available"),
        ({"recall_ks": (1, 10)}, r"\[1, N-1=9\]"),
        ({"nmi_k": 11}, r"\[1, N=10\]"),
    ],
)
def test_compute_metrics_rejects_bad_input(kwargs: dict, message: str) -> None:
    args = {"embeddings": np.eye(10, dtype=np.float32), "labels": np.arange(10) % 5} | kwargs
    with pytest.raises(ValueError, match=message):
        compute_metrics(args.pop("embeddings"), args.pop("labels"), **args)


# ----------------------------------------------------------------------------- golden case 6
GOLDEN_KEYS = {
    "recall@1": "e_recall_at_1",
    "recall@2": "e_recall_at_2",
    "recall@4": "e_recall_at_4",
    "recall@8": "e_recall_at_8",
    "nmi": "nmi",
    "f1": "f1",
    "map_c": "mAP_c",
}


def test_golden_knn_recall_and_map_c() -> None:
    g = load_golden()
    x, labels = g["metrics_features"], g["metrics_labels"]
    for backend in BACKENDS:
        np.testing.assert_array_equal(
            labels[knn(x, 8, backend=backend)], g["metrics_knn_classes_excl_self_k8"]
        )
    out = compute_metrics(x, labels, metrics=("recall", "map_c"))
    for key in ("recall@1", "recall@2", "recall@4", "recall@8", "map_c"):
        assert out[key] == float(g[f"metrics_{GOLDEN_KEYS[key]}"]), key


def test_golden_nmi_and_f1_from_recorded_clusters() -> None:
    g = load_golden()
    clusters, labels = g["metrics_kmeans_cluster_labels"], g["metrics_labels"]
    assert nmi(clusters, labels) == float(g["metrics_nmi"])
    assert f1_score_clusters(clusters, labels) == float(g["metrics_f1"])


def test_golden_full_pipeline_with_faiss_kmeans() -> None:
    # Recorded with faiss 1.15.1. Every faiss-cpu release setup.cfg admits (1.8.0.post1 ... 1.15.1; all 14
    # releases checked one by one, 2026-12) gives the same centroids and partition bit for bit: no tolerance.
    g = load_golden()
    x, labels, k = g["metrics_features"], g["metrics_labels"], int(g["metrics_n_classes_kmeans"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        centroids, clusters = kmeans(x, k)
    np.testing.assert_array_equal(centroids, g["metrics_kmeans_centroids"], err_msg=f"faiss {faiss.__version__}")
    np.testing.assert_array_equal(clusters, g["metrics_kmeans_cluster_labels"])
    out = compute_metrics(x, labels, nmi_k=k)
    assert {key: out[key] for key in GOLDEN_KEYS} == {
        key: float(g[f"metrics_{v}"]) for key, v in GOLDEN_KEYS.items()
    }
