"""Former home of the local server, kept as an alias: the server is the `serving.server` package.

`from serving.local_server import ModelServer` keeps working for code and docs written against it.
"""
from serving.server import ModelServer, RequestError, list_versions, valid_model_name  # noqa: F401
from serving.server.main import main  # noqa: F401
from serving.server.rest import PATH_RE as _PATH_RE  # noqa: F401
