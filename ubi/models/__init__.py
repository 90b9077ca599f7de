"""SQLAlchemy tables of the store and the session factory."""

from ubi.models.base import Base, table_of, utcnow
from ubi.models.events import (
    DailyInteraction,
    DailyWorkItem,
    Event,
    EventKey,
    daily_focus,
    daily_rollups,
)
from ubi.models.governance import AuditEntry, DeletionJob, RetentionDecision
from ubi.models.intelligence import (
    Anomaly,
    Baseline,
    BaselineAnchor,
    FeatureDay,
    Score,
    Signal,
    SignalFeedback,
    SignalVersion,
)
from ubi.models.outbox import ReceiptOutbox, SignalOutbox, TaskOutbox
from ubi.models.session import (
    dialect_insert,
    get_engine,
    read_scope,
    session_factory,
    session_scope,
)
from ubi.models.stream import StreamRateBucket, StreamSubscription
from ubi.models.tenancy import (
    Batch,
    DirtySubject,
    FeatureRefresh,
    IngestionState,
    TenantConfigVersion,
    TenantDay,
)

__all__ = [
    "Anomaly", "AuditEntry", "Base", "Baseline", "BaselineAnchor", "Batch", "DailyInteraction",
    "DailyWorkItem", "DeletionJob", "DirtySubject", "Event", "EventKey", "FeatureDay",
    "FeatureRefresh", "IngestionState",
    "ReceiptOutbox", "RetentionDecision", "Score", "Signal", "SignalFeedback", "SignalOutbox",
    "SignalVersion", "StreamRateBucket", "StreamSubscription", "TaskOutbox",
    "TenantConfigVersion", "TenantDay", "daily_focus", "daily_rollups", "dialect_insert",
    "get_engine", "read_scope", "session_factory", "session_scope", "table_of", "utcnow",
]
