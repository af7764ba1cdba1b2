"""IndexBuilder: a custom TFX component that turns the Trainer's tower and the catalogue's
embeddings into the served SavedModel (every signature, a tuned ScaNN index, TF Serving's warm-up
file), the Model artifact the Evaluator judges and the Pusher pushes."""
from poster_similarity.components.index_builder.component import IndexBuilder

__all__ = ["IndexBuilder"]
