"""store: object (S3) and block (NBD) storage over an erasure-coded chunk store.

The package is layered (docs/design.md): a module imports only from lower ranks, checked by
import-linter in `make test`.
"""

__version__ = "0.1.0"
