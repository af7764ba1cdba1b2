"""What a caller of the served model uses: `PosterClient` (REST or gRPC, the same calls TF Serving
answers) and the two end-user apps built on it, `posters query` (client/query.py) and `posters
gallery` (client/gallery.py). Apart from the model server (`poster_similarity.serving`): a client
never imports the server, so it runs against TF Serving as well as against `posters serve`."""
from poster_similarity.client.poster_client import PosterClient, ServerUnavailable, ServingError, history_rows

__all__ = ["PosterClient", "ServerUnavailable", "ServingError", "history_rows"]
