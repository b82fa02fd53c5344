"""Samples-averaged F1 of species sets (GLC 2024, GLC 2025, GeoPlant), and its expectation.

The metric
----------
For each survey i, with predicted set P_i and true set T_i::

    F1_i = 2 |P_i ∩ T_i| / (|P_i| + |T_i|),        score = mean_i F1_i

(the samples-averaged F1: GeoPlant's ``sample_f1_at_k``, sklearn's ``f1_score(average=
"samples", zero_division=0)`` that malpolon uses). It is NOT the micro F1 of all pairs pooled,
which Kaggle's page names but which scores the same predictions differently (format notes
§9: 0.2956 samples against 0.3050 micro). A prediction is a set: repeated ids count once.
An empty predicted set scores 0, also when the truth is empty too (0/0: GeoPlant's 1e-12
guard gives 0, as sklearn with ``zero_division=0``); precision is 0 for an empty prediction
and recall 0 for an empty truth, likewise.

Sets are ragged. Every function takes them as a ``list`` of int arrays (one per row) or as a
``tuple`` ``(indptr, indices)``, the CSR pair (row i's ids are ``indices[indptr[i]:
indptr[i + 1]]``); :func:`ragged` turns either into the CSR pair, each row sorted ascending
without repeats. Species ids are the archive's (any non-negative ints, not contiguous).

Expected F1 under independent labels
------------------------------------
Given each species' presence probability p_j, labels independent (the demo's truth; a
model's own belief), and a nonempty set P of m species, let A = |P ∩ T| and B = |T \\ P|:
two independent Poisson-binomial counts (over P and over the others). Then
E[F1] = E[2A / (m + A + B)]. With 1/(m+a+b) = ∫_0^1 x^(m+a+b-1) dx and the generating
function G(x) = Π_j (1 - p_j + p_j x) over ALL species::

    E[F1] = 2 ∫_0^1 x^m G(x) Σ_{j∈P} p_j / (1 - p_j + p_j x) dx

(E[A x^(A-1)] E[x^B] = G'_P(x) G_rest(x), and G'_P = G_P Σ_{j∈P} p_j/(1 - p_j + p_j x)).
Surveys have at least one species (the demo draws them so, and the archive's train has no
empty survey), so every expectation here is CONDITIONED on T nonempty: an empty truth gives
F1 = 0 to a nonempty P, so E[F1 | T ≠ ∅] = E[F1] / (1 - Π_j (1 - p_j)). A row whose
probabilities are all 0 cannot be conditioned: its expectation is given as 0.

Exact and numerical parts: the formula is exact, as are the conditioning and the set
sizes. The integral is computed by Gauss-Legendre quadrature on [0, 1]: the integrand is a
polynomial, but of degree up to m + S - 1, so the rule is not exact. Near x = 1, where its
mass lies, it behaves as x^N with N = m + the expected richness, and the node count grows as
sqrt(8 N) (:func:`quadrature_nodes`). Against the exact distributions of A and B
(:func:`exact_expected_f1`), the largest error measured was 3e-14, over every prefix
k = 1..300 of 20 realistic rows of 300 species (56 nodes; a fixed 32 nodes gave 1e-5), and
5e-15 for top-30 sets over 11,255 species (bench/README.md; tests/test_f1.py holds it to
1e-9). log G is summed in log space. Over a dense truth of 11,255 species, the species of
p < ``SERIES_LIMIT`` enter log G through the series log(1 - p y) = -Σ_r (p y)^r / r, cut
where its tail is below 1e-15: a dozen power sums of the matrix instead of a logarithm per
species and node. The others enter exactly.

The best set
------------
With independent labels the set that maximises expected F1 is a top-k set by probability
(Jansche, ACL 2007; Dembczynski et al., NeurIPS 2011; Ye et al., ICML 2012): only its size
must be searched (the conditioning divides every nonempty set's expectation by the same
number, so it moves no best set). :func:`expected_f1_of_prefixes` gives E_k for every
prefix k = 0..K of a row's candidates in one quadrature (cumulative sums of the terms over
the candidates; E_0 = 0). :func:`bayes_optimal` takes the truth's probabilities of all
species and returns each row's best top-k set and its expected F1: the Bayes limit of the
score. A model's own expected-F1-optimal size (``geolifeclef.predictions.set_rules``) uses
its K candidates' probabilities, species outside its K taken as p = 0.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

Sets = list[np.ndarray] | tuple[np.ndarray, np.ndarray]
"""A list of int arrays (one set per row) or the CSR pair ``(indptr, indices)``."""

MIN_QUADRATURE_NODES = 32
"""Fewest Gauss-Legendre nodes :func:`quadrature_nodes` gives."""
SERIES_LIMIT = 0.05
"""Species below this probability enter log G by the series of log(1 - p y) (12 terms at
a richness of 40, by the tail's bound); a limit of 0.25 needed 28 and took 1.8x as long on
11,255 species."""
SERIES_TOLERANCE = 1e-15
"""Bound on the series' dropped tail, in log G."""
WORK_ELEMENTS = 2**21
"""Elements of a (rows, candidates, nodes) work array (16 MB in float64): rows are taken in
chunks of this size."""
BAYES_FIRST_SEARCH = 128
"""Set sizes :func:`bayes_optimal` searches first; a row whose best size is the largest
searched is searched again with twice as many, up to every species."""


# --------------------------------------------------------------------------------------
# Sets
# --------------------------------------------------------------------------------------


def ragged(sets: Sets) -> tuple[np.ndarray, np.ndarray]:
    """The CSR pair ``(indptr int64, indices int64)`` of ``sets``, each row's ids sorted
    ascending and unique. A ``tuple`` is read as ``(indptr, indices)``; give a ``list`` for a
    list of sets."""
    if isinstance(sets, tuple):
        if len(sets) != 2:
            raise ValueError(
                f"a tuple of sets must be the CSR pair (indptr, indices), got {len(sets)} "
                "items; give a list for a list of sets"
            )
        indptr = np.asarray(sets[0])
        indices = np.asarray(sets[1])
        if indptr.ndim != 1 or len(indptr) == 0 or indptr[0] != 0:
            raise ValueError("indptr must be 1-d and start at 0")
        if (np.diff(indptr) < 0).any() or indptr[-1] != len(indices):
            raise ValueError(
                f"indptr must be non-decreasing and end at len(indices) = {len(indices)}, "
                f"ends at {indptr[-1]}"
            )
    else:
        rows = [np.asarray(s).reshape(-1) for s in sets]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        filled = [r for r in rows if len(r)]  # an empty np.array([]) is float: not its dtype
        indices = np.concatenate(filled) if filled else np.empty(0, dtype=np.int64)
    if len(indices) and not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"species ids must be integers, got {indices.dtype}")
    indices = indices.astype(np.int64, copy=False)
    indptr = indptr.astype(np.int64, copy=False)
    if len(indices) and indices.min() < 0:
        at = int(np.argmax(indices < 0))
        row = int(np.searchsorted(indptr, at, side="right") - 1)
        raise ValueError(f"row {row} holds the negative species id {indices[at]}")
    n = len(indptr) - 1
    width = int(indices.max()) + 1 if len(indices) else 1
    matrix = sp.csr_array((np.ones(len(indices), np.int8), indices, indptr), shape=(n, width))
    matrix.sum_duplicates()  # sorts each row and merges repeats
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)


def _indicator(indptr: np.ndarray, indices: np.ndarray, width: int) -> sp.csr_array:
    return sp.csr_array(
        (np.ones(len(indices), np.float64), indices, indptr), shape=(len(indptr) - 1, width)
    )


def _same_rows(predicted: tuple, truth: tuple) -> None:
    if len(predicted[0]) != len(truth[0]):
        raise ValueError(
            f"{len(predicted[0]) - 1} predicted sets for {len(truth[0]) - 1} true sets: "
            "give one of each per row, in the same row order"
        )


# --------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetScores:
    """Per-row counts of predicted sets against true sets, and the figures from them."""

    hits: np.ndarray
    """(n,) |P_i ∩ T_i|."""
    predicted_size: np.ndarray
    """(n,) |P_i| (repeats dropped)."""
    true_size: np.ndarray
    """(n,) |T_i|."""

    @property
    def f1(self) -> np.ndarray:
        """(n,) 2|P∩T| / (|P| + |T|); 0 where P is empty (T empty or not)."""
        denominator = self.predicted_size + self.true_size
        return np.where(self.predicted_size > 0, 2.0 * self.hits / np.maximum(denominator, 1), 0.0)

    @property
    def precision(self) -> np.ndarray:
        """(n,) |P∩T| / |P|; 0 where P is empty."""
        return self.hits / np.maximum(self.predicted_size, 1)

    @property
    def recall(self) -> np.ndarray:
        """(n,) |P∩T| / |T|; 0 where T is empty."""
        return self.hits / np.maximum(self.true_size, 1)

    def summary(self) -> dict[str, float]:
        """The means over rows: samples-averaged F1, precision and recall, set sizes."""
        n = len(self.hits)
        mean = (lambda a: float(np.mean(a))) if n else (lambda a: float("nan"))
        return {
            "f1": mean(self.f1),
            "precision": mean(self.precision),
            "recall": mean(self.recall),
            "predicted_size": mean(self.predicted_size),
            "true_size": mean(self.true_size),
            "rows": n,
        }


def score_sets(predicted: Sets, truth: Sets) -> SetScores:
    """Each row's predicted set scored against its true set (rows in the same order)."""
    predicted, truth = ragged(predicted), ragged(truth)
    _same_rows(predicted, truth)
    width = 1 + max(int(predicted[1].max(initial=-1)), int(truth[1].max(initial=-1)), 0)
    both = _indicator(*predicted, width).multiply(_indicator(*truth, width))
    hits = np.asarray(both.sum(axis=1)).reshape(-1).round().astype(np.int64)
    return SetScores(hits, np.diff(predicted[0]), np.diff(truth[0]))


def samples_f1(predicted: Sets, truth: Sets) -> float:
    """The score: mean over rows of each row's F1 (:class:`SetScores`)."""
    return float(np.mean(score_sets(predicted, truth).f1))


def f1_of_prefixes(candidate_ids: np.ndarray, truth: Sets) -> np.ndarray:
    """(n, K + 1): column k is the F1 of the first k candidates of each row of
    ``candidate_ids`` (n, K) against its true set (column 0: the empty set, 0). The K ids of
    a row must be distinct, as the predictions table's are."""
    ids = np.asarray(candidate_ids)
    if ids.ndim != 2:
        raise ValueError(f"candidate ids must be 2-d (rows x K), got shape {ids.shape}")
    indptr, indices = ragged(truth)
    if len(indptr) - 1 != len(ids):
        raise ValueError(f"{len(ids)} rows of candidates for {len(indptr) - 1} true sets")
    n, k = ids.shape
    ids = ids.astype(np.int64)
    if ids.size and ids.min() < 0:
        row = int(np.argmax((ids < 0).any(axis=1)))
        raise ValueError(f"row {row} of the candidates holds a negative species id")
    ordered = np.sort(ids, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if repeated.any():
        raise ValueError(f"row {int(np.argmax(repeated))} lists a candidate species twice")
    width = 1 + max(int(ids.max(initial=-1)), int(indices.max(initial=-1)), 0)
    truth_keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr)) * width + indices
    keys = np.arange(n, dtype=np.int64)[:, None] * width + ids
    hit = np.isin(keys, truth_keys)
    scores = np.zeros((n, k + 1))
    sizes = np.arange(1, k + 1)
    scores[:, 1:] = 2.0 * np.cumsum(hit, axis=1) / (sizes + np.diff(indptr)[:, None])
    return scores


# --------------------------------------------------------------------------------------
# Expected F1 under independent labels
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _quadrature(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    return (t + 1.0) / 2.0, w / 2.0


def _check_probabilities(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be 2-d (rows x species), got shape {p.shape}")
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"row {row}, column {column}: probability {p[row, column]} is not in [0, 1]"
        )
    return p


def _log_g_exact(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, len(y)): Σ_j log(1 - p_j y) over the columns of ``p`` (float64 (n, c))."""
    with np.errstate(divide="ignore"):  # p = 1 at y = 1: log 0 = -inf, G(0) = 0
        return np.log1p(-p[:, :, None] * y).sum(axis=1)


def _log_g_all(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, len(y)): log G at x = 1 - y over every species of ``p`` (float64 (n, S)): those
    of p >= ``SERIES_LIMIT`` exactly, the others by their power sums (module docstring)."""
    large = p >= SERIES_LIMIT
    small = np.where(large, 0.0, p)
    out = np.zeros((len(p), len(y)))
    if large.any():  # each row's large ones, left-aligned, 0 (a factor 1) past them
        rows, columns = np.nonzero(large)
        counts = np.bincount(rows, minlength=len(p))
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        gathered = np.zeros((len(p), int(counts.max())))
        gathered[rows, slot] = p[rows, columns]
        out += _log_g_exact(gathered, y)
    largest = float(small.max(initial=0.0))
    if largest > 0:
        total = float(small.sum(axis=1).max())
        # tail of Σ_j Σ_{r>R} (p_j y)^r / r  <=  largest^R Σ_j p_j / ((R + 1)(1 - largest))
        terms = 1
        while largest**terms * total / ((terms + 1) * (1 - largest)) > SERIES_TOLERANCE:
            terms += 1
        power = small.copy()
        powers = np.empty((len(p), terms))
        for r in range(terms):
            if r:
                power *= small
            powers[:, r] = power.sum(axis=1)
        orders = np.arange(1, terms + 1)
        out -= powers @ (y[None, :] ** orders[:, None] / orders[:, None])
    return out


def quadrature_nodes(width: int, richness: float) -> int:
    """Gauss-Legendre nodes for sets of up to ``width`` species where at most ``richness``
    species are expected present: the integrand is then about x^N with N = width +
    richness, steep near x = 1, and ceil(sqrt(8 N)) nodes (at least 32, a multiple of 8) kept
    the error below 1e-12 wherever it was measured (N up to 1,224: bench/README.md,
    tests/test_f1.py); 32 nodes at N = 1,040 were off by 5e-3."""
    needed = int(np.ceil(np.sqrt(8.0 * (width + richness))))
    return max(MIN_QUADRATURE_NODES, -(-needed // 8) * 8)


def _prefix_expectations(
    prefix: np.ndarray, everything: np.ndarray | None, nodes: int | None
) -> np.ndarray:
    """(n, c + 1): the expected F1, conditioned on a nonempty truth, of the first k columns
    of ``prefix`` (float64 (n, c)), k = 0..c. ``everything``: the probabilities of all the
    species (n, S), None where ``prefix`` holds them all; ``nodes``: None for
    :func:`quadrature_nodes`."""
    n, width = prefix.shape
    every = prefix if everything is None else everything
    if nodes is None:
        nodes = quadrature_nodes(width, float(every.sum(axis=1).max(initial=0.0)))
    x, w = _quadrature(nodes)
    y = np.append(1.0 - x, 1.0)  # at the nodes, then at x = 0
    log_g = _log_g_exact(prefix, y) if everything is None else _log_g_all(everything, y)
    terms = prefix[:, :, None] / (1.0 - prefix[:, :, None] * y[:-1])  # p/(1 - p + p x)
    np.cumsum(terms, axis=1, out=terms)
    terms *= (w * np.exp(log_g[:, :-1]))[:, None, :]
    powers = x ** np.arange(1, width + 1)[:, None]  # x^k, (c, Q)
    integral = np.einsum("nkq,kq->nk", terms, powers)
    nonempty = -np.expm1(log_g[:, -1])  # P(T nonempty) = 1 - G(0)
    out = np.zeros((n, width + 1))
    np.divide(2.0 * integral, nonempty[:, None], out=out[:, 1:], where=nonempty[:, None] > 0)
    return out


def _rows_per_chunk(*widths: int) -> int:
    """Rows whose work arrays of these widths stay within ``WORK_ELEMENTS`` each."""
    return max(1, WORK_ELEMENTS // max(1, *widths))


def expected_f1_of_prefixes(probabilities: np.ndarray, nodes: int | None = None) -> np.ndarray:
    """(n, K + 1): E_k, the expected F1 of the first k columns of each row, k = 0..K (E_0 =
    0), under independent labels with these probabilities, conditioned on at least one
    present. The K columns are all the species there are: any other species is taken as
    p = 0 (a model's K candidates: what lies outside its top K it did not score). Any
    column order works; for the best set, give each row sorted by decreasing probability.
    ``nodes``: quadrature nodes, None to choose them (:func:`quadrature_nodes`)."""
    p = _check_probabilities(probabilities)
    n, k = p.shape
    out = np.zeros((n, k + 1))
    step = _rows_per_chunk(k * (nodes or quadrature_nodes(k, k)))
    for start in range(0, n, step):
        chunk = p[start : start + step].astype(np.float64)
        out[start : start + step] = _prefix_expectations(chunk, None, nodes)
    return out


def _columns(ids: np.ndarray, species_ids: np.ndarray | None, width: int) -> np.ndarray:
    """Matrix column of each id, -1 where the id is not a column."""
    if species_ids is None:
        return np.where(ids < width, ids, -1)
    species_ids = np.asarray(species_ids)
    if species_ids.shape != (width,):
        raise ValueError(f"{len(species_ids)} species ids for {width} probability columns")
    if (np.diff(species_ids) <= 0).any():
        raise ValueError("species_ids must be sorted ascending without repeats")
    at = np.minimum(np.searchsorted(species_ids, ids), width - 1)
    return np.where(species_ids[at] == ids, at, -1)


def expected_f1(
    probabilities: np.ndarray,
    sets: Sets,
    species_ids: np.ndarray | None = None,
    nodes: int | None = None,
) -> np.ndarray:
    """(n,): each set's expected F1 under the truth's ``probabilities`` (n, S), labels
    independent, conditioned on at least one species present. Column j is species
    ``species_ids[j]`` (sorted; default: j); an id that is no column has p = 0 (it counts in
    |P| and is never present). An empty set's expectation is 0. ``nodes``: quadrature
    nodes, None to choose them (:func:`quadrature_nodes`)."""
    p_all = _check_probabilities(probabilities)
    indptr, indices = ragged(sets)
    n, width = p_all.shape
    if len(indptr) - 1 != n:
        raise ValueError(f"{len(indptr) - 1} sets for {n} rows of probabilities")
    columns = _columns(indices, species_ids, width)
    sizes = np.diff(indptr)
    largest = int(sizes.max(initial=0))
    out = np.zeros(n)
    step = _rows_per_chunk(width, largest * (nodes or quadrature_nodes(largest, largest)))
    for start in range(0, n, step):
        stop = min(n, start + step)
        p = p_all[start:stop].astype(np.float64)
        chunk_sizes = sizes[start:stop]
        # each set's members' probabilities, left-aligned, 0 past its end (and for non-columns)
        members = np.zeros((stop - start, int(chunk_sizes.max(initial=0))))
        lo, hi = indptr[start], indptr[stop]
        row = np.repeat(np.arange(stop - start), chunk_sizes)
        slot = np.arange(hi - lo) - (indptr[start:stop] - lo).repeat(chunk_sizes)
        found = columns[lo:hi]
        members[row, slot] = np.where(found >= 0, p[row, np.maximum(found, 0)], 0.0)
        prefixes = _prefix_expectations(members, p, nodes)
        out[start:stop] = prefixes[np.arange(stop - start), chunk_sizes]
    return out


def _sorted_top(p: np.ndarray, size: int) -> np.ndarray:
    """(n, size) the columns of each row's ``size`` largest probabilities, largest first,
    equal ones by column."""
    width = p.shape[1]
    if size < width:
        top = np.sort(np.argpartition(-p, size - 1, axis=1)[:, :size], axis=1)
    else:
        top = np.broadcast_to(np.arange(width), p.shape)
    order = np.argsort(-np.take_along_axis(p, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def bayes_optimal(
    probabilities: np.ndarray, species_ids: np.ndarray, nodes: int | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The set of each row that maximises the expected F1 under the truth's
    ``probabilities`` (n, S) (labels independent, at least one present; column j is species
    ``species_ids[j]``, sorted), and that expected F1 (n,): the Bayes limit of the score.

    The best set is a top-k set by probability (module docstring): E_k is computed for k up
    to ``BAYES_FIRST_SEARCH``, and again with twice as many for a row whose best k is the
    largest searched, up to all S species. Ties: the smaller k; among equal probabilities,
    the smaller column. Sets come as the CSR pair ``(indptr, indices)``, each row's species
    best first."""
    p_all = _check_probabilities(probabilities)
    n, width = p_all.shape
    species_ids = np.asarray(species_ids)
    _columns(species_ids[:0], species_ids, width)  # checks the ids
    sizes = np.zeros(n, dtype=np.int64)
    best = np.zeros(n)
    picked: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * n
    first = min(width, BAYES_FIRST_SEARCH)
    step = _rows_per_chunk(width, first * (nodes or quadrature_nodes(first, first)))
    for start in range(0, n, step):
        p = p_all[start : start + step].astype(np.float64)
        pending = np.arange(len(p))
        size = first
        while len(pending):
            top = _sorted_top(p[pending], size)
            expected = _prefix_expectations(
                np.take_along_axis(p[pending], top, axis=1), p[pending], nodes
            )
            k = 1 + np.argmax(expected[:, 1:], axis=1)  # the first maximum: the smaller k
            done = (k < size) | (size == width)
            for local in np.flatnonzero(done):
                row = start + pending[local]
                sizes[row] = k[local]
                best[row] = expected[local, k[local]]
                picked[row] = top[local, : k[local]]
            pending = pending[~done]
            size = min(width, 2 * size)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    indices = species_ids[np.concatenate(picked)] if n else species_ids[:0]
    return (indptr, indices.astype(np.int64)), best


# --------------------------------------------------------------------------------------
# Exact reference
# --------------------------------------------------------------------------------------


def _poisson_binomial(p: np.ndarray) -> np.ndarray:
    """Distribution of the number of successes of independent trials ``p``, by DP."""
    dist = np.zeros(len(p) + 1)
    dist[0] = 1.0
    for i, q in enumerate(p):
        dist[1 : i + 2] = dist[1 : i + 2] * (1.0 - q) + dist[: i + 1] * q
        dist[0] *= 1.0 - q
    return dist


def exact_expected_f1(
    probabilities: np.ndarray, sets: Sets, species_ids: np.ndarray | None = None
) -> np.ndarray:
    """(n,): what :func:`expected_f1` computes, exactly: the distributions of A = |P ∩ T|
    and B = |T \\ P| by dynamic programming (O(S^2) a row), then Σ_a Σ_b P(a) P(b) 2a /
    (m + a + b) / P(T nonempty). The reference the tests and bench/bench_expected_f1.py
    hold the quadrature to; too slow for the archive's sizes."""
    p_all = _check_probabilities(probabilities).astype(np.float64)
    indptr, indices = ragged(sets)
    n, width = p_all.shape
    columns = _columns(indices, species_ids, width)
    out = np.zeros(n)
    for i in range(n):
        member = columns[indptr[i] : indptr[i + 1]]
        m = len(member)
        inside = np.zeros(width, dtype=bool)
        inside[member[member >= 0]] = True
        a = _poisson_binomial(p_all[i, inside])
        b = _poisson_binomial(p_all[i, ~inside])
        nonempty = 1.0 - a[0] * b[0]
        if m == 0 or nonempty <= 0:
            continue
        counts_a = np.arange(len(a))[:, None]
        counts_b = np.arange(len(b))[None, :]
        f1 = 2.0 * counts_a / (m + counts_a + counts_b)
        out[i] = float(a @ f1 @ b) / nonempty
    return out
