"""Reading and writing fields: graphnerf ``.safetensors`` files and tiny-cuda-nn / gmnerf / nf2vec
flat-parameter checkpoints.

* :func:`save_field` / :func:`load_field` / :func:`read_header`: graphnerf's self-describing
  ``.safetensors`` format (spec + metadata in the header, atomic writes).
* :func:`export_tcnn` / :func:`import_tcnn`: the tcnn flat layout (``mlp_base.params``,
  ``encoding.params``, ``triplane``), as in gmnerf's ``nerf_weights.pth``.
* :func:`load_any`: either, by file extension.

Every problem with a file raises :class:`CheckpointError` (a ``ValueError``) naming the file.
"""

from .checkpoint import load_any, load_field, read_header, save_field
from .errors import CheckpointError
from .tcnn import export_tcnn, import_tcnn

__all__ = [
    "CheckpointError",
    "export_tcnn",
    "import_tcnn",
    "load_any",
    "load_field",
    "read_header",
    "save_field",
]
