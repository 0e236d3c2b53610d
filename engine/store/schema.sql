-- The anstoss SQLite store (engine/store/sqlite.py), schema version 2. Idempotent: run at every
-- start, after engine/store/migrate.py has brought an older file to this version.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY,
    first_purchase_time INTEGER NOT NULL,
    first_order_value REAL NOT NULL,
    purchases INTEGER NOT NULL,
    purchase_value REAL NOT NULL,
    last_purchase_time INTEGER NOT NULL
) WITHOUT ROWID;
-- Consent per channel (granted 1 / withdrawn 2), set by the latest consent event by time.
CREATE TABLE IF NOT EXISTS permissions (
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    state INTEGER NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (customer_id, channel)
) WITHOUT ROWID;
-- Unsubscribed (1) or re-subscribed (0) per channel, the latest of those events by time.
CREATE TABLE IF NOT EXISTS subscriptions (
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    unsubscribed INTEGER NOT NULL,
    time INTEGER NOT NULL,
    PRIMARY KEY (customer_id, channel)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL UNIQUE,
    time INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    experiment TEXT NOT NULL,
    arm TEXT NOT NULL,
    policy TEXT NOT NULL,
    model_version TEXT NOT NULL,
    action TEXT NOT NULL,
    touchpoint TEXT NOT NULL,
    channel TEXT NOT NULL,
    probability REAL NOT NULL,
    cost REAL NOT NULL,
    features TEXT NOT NULL,
    eligible TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    removed TEXT NOT NULL,
    window_end INTEGER NOT NULL,
    status INTEGER NOT NULL DEFAULT 1,
    attributed_value REAL NOT NULL DEFAULT 0,
    attributed_purchases INTEGER NOT NULL DEFAULT 0,
    unsubscribes INTEGER NOT NULL DEFAULT 0,
    reward REAL,
    reward_source TEXT,
    close_seq INTEGER,
    closed_time INTEGER,
    request_id TEXT NOT NULL DEFAULT '',
    request_fingerprint TEXT NOT NULL DEFAULT '',
    deferred INTEGER NOT NULL DEFAULT 0,
    -- 1 active, 2 pending (deferred, not delivered yet), 3 not executed (engine/activation.py)
    activation INTEGER NOT NULL DEFAULT 1,
    -- From when the decision counts as a contact; NULL: it does not (no contact, pending, not
    -- executed).
    contact_time INTEGER,
    delivered_time INTEGER,
    opened_time INTEGER,
    clicked_time INTEGER,
    not_executed_time INTEGER,
    reported_values INTEGER NOT NULL DEFAULT 0,
    reported_value REAL NOT NULL DEFAULT 0
);
-- Covering: a customer's contact history (load_states) is read from the index alone; also the
-- customer's open decisions for attribution (by its first column).
CREATE INDEX IF NOT EXISTS decisions_by_contact
    ON decisions (customer_id, contact_time, channel, touchpoint);
CREATE UNIQUE INDEX IF NOT EXISTS decisions_by_request
    ON decisions (customer_id, request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS decisions_open_by_end ON decisions (window_end) WHERE status = 1;
CREATE INDEX IF NOT EXISTS decisions_by_close ON decisions (close_seq) WHERE close_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT,
    customer_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    type INTEGER NOT NULL,
    value REAL NOT NULL,
    channel TEXT NOT NULL,
    decision_id TEXT NOT NULL
);
-- Event ids are scoped to the customer.
CREATE UNIQUE INDEX IF NOT EXISTS events_by_customer_id
    ON events (customer_id, event_id) WHERE event_id IS NOT NULL;
-- Purchases and unsubscribes that arrived before a decision they fall after (retro attribution).
CREATE INDEX IF NOT EXISTS events_by_customer ON events (customer_id, time) WHERE type IN (1, 5);
CREATE TABLE IF NOT EXISTS outcomes (
    decision_id TEXT NOT NULL,
    outcome_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    reward REAL,
    value REAL,
    PRIMARY KEY (decision_id, outcome_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    arm TEXT NOT NULL,
    label TEXT NOT NULL,
    updates INTEGER NOT NULL,
    close_seq INTEGER NOT NULL,
    model BLOB NOT NULL
);
-- Closed decisions a learning arm could not learn (undecodable, or an update that kept failing).
CREATE TABLE IF NOT EXISTS unlearned (
    arm TEXT NOT NULL,
    close_seq INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (arm, close_seq)
) WITHOUT ROWID;
