"""Table definitions (SQLAlchemy Core). Times are integer microseconds since the epoch.

Integer times keep comparisons exact and identical on SQLite and PostgreSQL and let the
API render every timestamp with the same six fractional digits.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("create_time", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # SHA-256 of the whole key: keys are 240-bit random, so a fast hash is enough.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("create_time", BigInteger, nullable=False),
    Column("revoke_time", BigInteger, nullable=True),
    # When the key last authenticated a request, to the minute (users.mark_used).
    Column("last_used_time", BigInteger, nullable=True),
    Index("ix_api_keys_user_live", "user_id", "revoke_time"),
)

# Signed-in browsers of the web app. The cookie holds a random token; only its SHA-256 is
# stored, so a copy of the database opens no one's session. A session lives as long as
# the API key it was opened with: revoking the key ends it.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("api_key_id", String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    # The synchronizer token every form of this session carries.
    Column("csrf_token", String(64), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("expire_time", BigInteger, nullable=False),
    Index("ix_web_sessions_expire_time", "expire_time"),
)

sources = Table(
    "sources",
    metadata,
    Column("name", String(512), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("repo", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("is_private", Boolean, nullable=False, default=False),
    Column("default_branch", String(255), nullable=False),
    # JSON list of branch names.
    Column("branches", Text, nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    # Shell script run in the sandbox before the agent works (installs dependencies).
    Column("setup_script", Text, nullable=True),
    # Whether agent commands of this source may use the network.
    Column("network_allowed", Boolean, nullable=False, server_default=false()),
    # Where the repository lives: "github" (API and token apply) or "git" (any URL or path).
    Column("forge", String(16), nullable=False, server_default="git"),
)

# Sessions admitted by a runner that have not ended (see sessions.admit_time).
LIVE_ADMITTED_SQL = "admit_time IS NOT NULL AND state NOT IN ('COMPLETED', 'FAILED')"

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(32), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("source_name", String(512), nullable=True),
    Column("starting_branch", String(255), nullable=True),
    Column("require_plan_approval", Boolean, nullable=False, default=False),
    Column("automation_mode", String(40), nullable=False),
    Column("archived", Boolean, nullable=False, default=False),
    # JSON list of SessionOutput wire objects.
    Column("outputs", Text, nullable=False, default="[]"),
    Column("create_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    # createTime of the newest activity; the next one is at least 1 ms later.
    Column("last_activity_time", BigInteger, nullable=False, default=0),
    # The branch the session's changes were pushed to (sourceContext.workingBranch).
    Column("working_branch", String(255), nullable=True),
    # The state a PAUSED session returns to on resume (QUEUED, PLANNING or IN_PROGRESS).
    Column("paused_from", String(32), nullable=True),
    # When a runner first took the session on (claimed its job); NULL while it waits in
    # the queue. Admitted sessions that have not ended count against the owner's
    # user_max_concurrent_sessions (store/jobs.py).
    Column("admit_time", BigInteger, nullable=True),
    Index("ix_sessions_owner_list", "owner_id", "archived", "create_time", "id"),
    # Other processes' changes are found by update time (the SQLite change poll).
    Index("ix_sessions_update_time", "update_time"),
    # Only the sessions that count against their owner's limit, so counting them reads a
    # handful of entries, however many sessions the owner ever ran. The predicate is
    # LIVE_ADMITTED_SQL verbatim: both databases use a partial index only for a query
    # that states its condition.
    Index(
        "ix_sessions_live_admitted",
        "owner_id",
        postgresql_where=text(LIVE_ADMITTED_SQL),
        sqlite_where=text(LIVE_ADMITTED_SQL),
    ),
)

# Sessions each user created per UTC day (store/quotas.py): a count, not a query over
# sessions, because a deleted session is gone from that table but still used the quota.
user_session_days = Table(
    "user_session_days",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    # Days since 1970-01-01, UTC.
    Column("day", Integer, primary_key=True),
    Column("created", Integer, nullable=False),
)

activities = Table(
    "activities",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "session_id",
        String(20),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("create_time", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    # The activity's wire JSON without name, id and createTime (see activities.render).
    Column("body", Text, nullable=False),
    Index("ix_activities_session_time", "session_id", "create_time", unique=True),
)

plans = Table(
    "plans",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "session_id",
        String(20),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # JSON list of PlanStep wire objects.
    Column("steps", Text, nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Column("approve_time", BigInteger, nullable=True),
    Index("ix_plans_session", "session_id", "create_time"),
)

jobs = Table(
    "jobs",
    metadata,
    Column(
        "session_id", String(20), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("state", String(16), nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expire_time", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    # Bumped by every enqueue; a worker marks the job done only if it is unchanged, so a
    # wake-up that arrives while the worker finishes makes the job run again.
    Column("generation", Integer, nullable=False, default=1),
    Column("available_time", BigInteger, nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Index("ix_jobs_claim", "state", "available_time"),
)

transcripts = Table(
    "transcripts",
    metadata,
    Column(
        "session_id", String(20), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    ),
    # JSON list of Chat Completions messages (system, user, assistant, tool).
    Column("messages", Text, nullable=False),
    # "planning" or "work": which tools the model was last given.
    Column("phase", String(16), nullable=False),
    # createTime of the newest userMessaged activity already in ``messages``.
    Column("last_user_message_time", BigInteger, nullable=False),
    Column("update_time", BigInteger, nullable=False),
    # JSON {summary, commit_message} once the agent called finish and until the session
    # is COMPLETED (delivery in between); NULL otherwise.
    Column("finishing", Text, nullable=True),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column(
        "session_id", String(20), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("base_commit", String(64), nullable=False),
    # Cumulative patch from base_commit after the last mutating step.
    Column("patch", Text, nullable=False),
    Column("update_time", BigInteger, nullable=False),
)

# Where a session's changes were pushed, and its pull request (AUTO_CREATE_PR).
pull_request_deliveries = Table(
    "pull_request_deliveries",
    metadata,
    Column(
        "session_id", String(20), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("branch", String(255), nullable=False),
    # A commit about to be pushed: after a crash the remote branch may already hold it.
    Column("pending_commit", String(64), nullable=True),
    # The branch's tip as this session last pushed it; later commits build on it.
    Column("pushed_commit", String(64), nullable=True),
    # The pull request's wire JSON (PullRequest), once one is open.
    Column("pull_request", Text, nullable=True),
    Column("update_time", BigInteger, nullable=False),
)

# An autoincrementing 64-bit key (SQLite makes only INTEGER PRIMARY KEY the rowid).
SerialKey = BigInteger().with_variant(Integer(), "sqlite")

# A user's webhook endpoints (an extension of v1alpha): where events about their sessions go.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    # JSON list of event types; empty means every type.
    Column("event_types", Text, nullable=False),
    Column("description", Text, nullable=False, default=""),
    # The signing secret (whsec_...), shown to its owner once, at creation.
    Column("secret", String(128), nullable=False),
    Column("create_time", BigInteger, nullable=False),
    Index("ix_webhooks_owner_list", "owner_id", "create_time", "id"),
)

# The outbox: one row per (webhook, event), written in the transaction of the change it
# reports; ``id`` orders the events of a session.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("webhook_id", String(32), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    # The webhook-id header: the same on every attempt, so receivers can deduplicate.
    Column("message_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    # The session the event is about (deliveries of one session go in order); no foreign
    # key: an event outlives a deleted session.
    Column("session_id", String(20), nullable=True),
    # JSON the delivery is built from (see store/webhook_outbox).
    Column("payload", Text, nullable=False),
    # "pending", "delivered" or "failed".
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_time", BigInteger, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expire_time", BigInteger, nullable=True),
    Column("create_time", BigInteger, nullable=False),
    Index("ix_webhook_events_due", "state", "next_attempt_time"),
    Index("ix_webhook_events_order", "webhook_id", "session_id", "id"),
)

# Each attempt at a delivery, for GET /v1alpha/webhooks/{id}/deliveries.
webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", SerialKey, primary_key=True, autoincrement=True),
    Column("webhook_id", String(32), ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("message_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    # The receiver's HTTP status; NULL when no response came (the error says why).
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=False, default=""),
    Column("time", BigInteger, nullable=False),
    Index("ix_webhook_attempts_list", "webhook_id", "id"),
)
