"""Business rules on the client side: what `posters query --genre … --per-group …`, the gallery's
filtered row and `PosterClient.*_filtered` send to the served model's filtered signatures
(docs/serving.md, "Business rules").

Only the standard library (numpy when encoding): the rules are plain request inputs, evaluated
inside the model, and `posters query` checks them before paying numpy's import.
They are encoded the way TF Serving's batching needs (`rule_inputs`): every list row starts with ""
(the model ignores "" and treats lists as sets, so the copies of a request's first element that
`pad_variable_length_inputs` appends change nothing) and no list is empty (TF Serving cannot pad an
empty tensor), and the numbers are int32, the signatures' dtype.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

LIST_INPUTS = ("include_genres", "exclude_genres", "required_tags", "forbidden_tags", "exclude_ids")
MAX_K = 1000  # the served model's cap on k (filtered_search.PlanConfig.max_k)


@dataclass(frozen=True)
class QueryRules:
    """The rules of one query; the defaults mean "no rule".

    Attributes:
        genres: a result has at least one of these genres (`include_genres`).
        not_genres: … none of these (`exclude_genres`).
        years: (min, max) year, both inclusive, 0 = open on that side (`year_range`).
        tags: … all of these tags (`required_tags`); not_tags: none of these (`forbidden_tags`).
        exclude: movie ids never returned (`exclude_ids`).
        per_group: at most this many results per series / crowding key, 0 = no limit.
        k: results wanted, 0 = the model's own k (at most `MAX_K`).
    """

    genres: tuple[str, ...] = ()
    not_genres: tuple[str, ...] = ()
    years: tuple[int, int] = (0, 0)
    tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    per_group: int = 0
    k: int = 0

    def any(self) -> bool:
        """Whether any rule is set (k alone is not a rule)."""
        return bool(self.genres or self.not_genres or any(self.years) or self.tags or self.not_tags
                    or self.exclude or self.per_group)

    def describe(self, like: str = "") -> str:
        """A row heading: `describe("this")` → "Horror like this, 1980–1999, max 1 per series"."""
        lo, hi = self.years
        parts = [" or ".join(self.genres) + (f" like {like}" if like else "") if self.genres
                 else (f"like {like}" if like else "")]
        parts.append(f"{lo}–{hi}" if lo and hi else f"from {lo}" if lo else f"until {hi}" if hi else "")
        parts += [f"not {' or '.join(self.not_genres)}" if self.not_genres else "",
                  f"with {', '.join(self.tags)}" if self.tags else "",
                  f"without {', '.join(self.not_tags)}" if self.not_tags else "",
                  f"{len(self.exclude)} excluded" if self.exclude else "",
                  f"max {self.per_group} per series" if self.per_group else ""]
        text = ", ".join(p for p in parts if p)
        return text[:1].upper() + text[1:]


def parse_years(text: str) -> tuple[int, int]:
    """"1980-1999" → (1980, 1999); "1980-" → (1980, 0); "-1999" → (0, 1999); "1984" → (1984, 1984).

    Raises:
        ValueError: anything else, or min > max.
    """
    lo_s, sep, hi_s = text.strip().replace("–", "-").partition("-")
    try:
        lo = int(lo_s) if lo_s.strip() else 0
        hi = (int(hi_s) if hi_s.strip() else 0) if sep else lo
    except ValueError:
        raise ValueError(f"years {text!r}: expected YEAR, FROM-TO, FROM- or -TO, e.g. 1980-1999") from None
    if lo < 0 or hi < 0 or (lo and hi and lo > hi) or not (lo or hi):
        raise ValueError(f"years {text!r}: expected positive years, FROM <= TO")
    return lo, hi


def _rows(values: Iterable[Iterable[str]]) -> list[list[bytes]]:
    rows = [[b""] + [str(v).encode("utf-8") for v in dict.fromkeys(vs) if v] for vs in values]
    width = max(map(len, rows), default=1)
    return [r + [b""] * (width - len(r)) for r in rows]


def rule_inputs(rules: QueryRules | Sequence[QueryRules], batch: int, k: int | None = None) -> dict[str, Any]:
    """The eight rule inputs for `batch` queries: one `QueryRules` for all, or one per query; `k`
    (when given) overrides each rule's k."""
    import numpy as np

    per_row = [rules] * batch if isinstance(rules, QueryRules) else list(rules)
    if len(per_row) != batch:
        raise ValueError(f"{len(per_row)} rules for {batch} queries")
    out: dict[str, Any] = {
        name: _rows(getattr(r, attr) for r in per_row)
        for name, attr in zip(LIST_INPUTS, ("genres", "not_genres", "tags", "not_tags", "exclude"), strict=True)}
    out["year_range"] = np.array([list(r.years) for r in per_row], np.int32).reshape(batch, 2)
    out["per_group"] = np.array([r.per_group for r in per_row], np.int32)
    out["k"] = np.array([r.k if k is None else k for r in per_row], np.int32)
    return out


class Filtered(list):
    """What `PosterClient.*_filtered` returns: per query `[(movie_id, score), …]`, best first, only
    the `num_results` real results (fewer than k only when no more posters satisfy the rules),
    plus `plan` per query (how the model answered: exact / approx / approx+exact) and, for
    `recommend_filtered`, `history_used` (as `Recommendations`)."""

    def __init__(self, rows=(), plan: list[str] | None = None, history_used: list[int] | None = None):
        super().__init__(rows)
        self.plan = plan or []
        self.history_used = history_used


def filtered_answer(out: dict[str, Any]) -> Filtered:
    """A filtered signature's outputs (numpy arrays) → `Filtered`."""
    import numpy as np

    rows = []
    for ids, scores, n in zip(out["movie_ids"], out["scores"], np.asarray(out["num_results"]).reshape(-1),
                              strict=True):
        rows.append([(i.decode("utf-8", "replace") if isinstance(i, bytes) else str(i), float(s))
                     for i, s in list(zip(ids, scores, strict=True))[:int(n)]])
    plan = [p.decode() if isinstance(p, bytes) else str(p) for p in np.asarray(out.get("plan", [])).reshape(-1)]
    used = out.get("history_used")
    used = [int(round(float(u))) for u in np.asarray(used).reshape(-1)] if used is not None else None
    return Filtered(rows, plan, used)
