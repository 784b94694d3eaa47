"""Maximum-weight matching of expected calls to decoded calls (parallel answers).

BFCL matches parallel calls greedily, which fails some correct answers given in another order; a
maximum-weight assignment (Hungarian algorithm, O(n^3), n <= MAX_CALLS) never does.
"""

from __future__ import annotations

#: what BFCL's string comparison ignores: spaces and ``,./-_*^``
STANDARDIZE_DROP = str.maketrans("", "", " ,./-_*^")


def standardize(text: str) -> str:
    """BFCL's string normalisation, the one copy: drop spaces and ``,./-_*^``, lowercase, ``'`` -> ``"``."""
    return text.translate(STANDARDIZE_DROP).lower().replace("'", '"')


def max_weight_matching(weights: list[list[float]]) -> list[tuple[int, int]]:
    """Pairs ``(row, column)`` maximising the total weight; each row and column used at most once.

    ``weights`` is rows x columns (rectangular allowed). Pairs of weight <= 0 are left out.
    """
    n_rows = len(weights)
    n_cols = len(weights[0]) if n_rows else 0
    if n_rows == 0 or n_cols == 0:
        return []
    n = max(n_rows, n_cols)
    top = max(max(row) for row in weights)
    # minimise cost = top - weight on a square matrix padded with zero-weight cells
    cost = [[top - (weights[i][j] if i < n_rows and j < n_cols else 0.0) for j in range(n)] for i in range(n)]
    inf = float("inf")
    u, v = [0.0] * (n + 1), [0.0] * (n + 1)
    match_col = [0] * (n + 1)  # match_col[j] = row (1-based) matched to column j
    way = [0] * (n + 1)
    for i in range(1, n + 1):
        match_col[0] = i
        j0 = 0
        min_to = [inf] * (n + 1)
        used = [False] * (n + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = match_col[j0], inf, 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = cost[i0 - 1][j - 1] - u[i0] - v[j]
                    if cur < min_to[j]:
                        min_to[j], way[j] = cur, j0
                    if min_to[j] < delta:
                        delta, j1 = min_to[j], j
            for j in range(n + 1):
                if used[j]:
                    u[match_col[j]] += delta
                    v[j] -= delta
                else:
                    min_to[j] -= delta
            j0 = j1
            if match_col[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            match_col[j0] = match_col[j1]
            j0 = j1
    pairs = []
    for j in range(1, n + 1):
        i = match_col[j]
        if i and i - 1 < n_rows and j - 1 < n_cols and weights[i - 1][j - 1] > 0:
            pairs.append((i - 1, j - 1))
    return sorted(pairs)
