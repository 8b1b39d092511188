"""The registry's storage: group-committed signed writes (:mod:`.writer`, :mod:`.writes`), search SQL
(:mod:`.search`), and the store that serves both (:mod:`.store`)."""

from .results import (
                      QUERY_INT_MAX,
                      AgentRecord,
                      BadQuery,
                      Change,
                      NodeHeartbeatResult,
                      NotFound,
                      ReceiptResult,
                      WriteResult,
                      query_int,
)
from .search import MAX_LIMIT, RANK_WINDOW
from .store import RegistryStore
from .writes import NOTIFY_CHANNEL

__all__ = ["MAX_LIMIT", "NOTIFY_CHANNEL", "QUERY_INT_MAX", "RANK_WINDOW", "AgentRecord", "BadQuery", "Change",
           "NodeHeartbeatResult", "NotFound", "ReceiptResult", "RegistryStore", "WriteResult", "query_int"]
