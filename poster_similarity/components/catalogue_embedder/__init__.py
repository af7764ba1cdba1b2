"""CatalogueEmbedder: a custom TFX Beam component that embeds the serving catalogue with the
Trainer's tower (tfx-bsl RunInference), dropping and reporting posters that cannot be decoded."""
from poster_similarity.components.catalogue_embedder.component import CatalogueEmbedder

__all__ = ["CatalogueEmbedder"]
