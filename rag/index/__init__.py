"""Where chunks and vectors live: one `Index` seam, a local and a team implementation.

`LocalIndex` keeps the SQLite catalog and an embedded Chroma store in the data folder (the
default, nothing leaves the machine). `TeamIndex` keeps a shared catalog in PostgreSQL and
vectors on a Chroma server (rag/index/team.py). The engine holds one local index and,
when settings name team servers, one team index for collections named `team:NAME`.
"""

from .base import DocumentWrite, Index
from .local import LocalIndex

TEAM_PREFIX = "team:"

__all__ = ["DocumentWrite", "Index", "LocalIndex", "TEAM_PREFIX"]
