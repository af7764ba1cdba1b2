"""What a caller of the served model uses: `PosterClient` (REST or gRPC, the same calls TF Serving
answers) and the two end-user apps built on it, `posters query` (client/query.py) and `posters
gallery` (client/gallery.py). Apart from the model server (`poster_similarity.serving`): a client
never imports the server, so it runs against TF Serving as well as against `posters serve`.

The names below load on first use (PEP 562), so that the apps' argument checks (client/checks.py)
answer a mistake without paying numpy's import.
"""
from __future__ import annotations

__all__ = ["Filtered", "PosterClient", "QueryRules", "Recommendations", "ServerUnavailable", "ServingError",
           "history_rows"]


def __getattr__(name: str):
    if name in __all__:
        from poster_similarity.client import poster_client

        return getattr(poster_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
