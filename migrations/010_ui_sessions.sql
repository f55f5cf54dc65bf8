-- The customer pages' sign-in links, each accepted once, and their sessions, each ended on the
-- server by sign-out (db/ui_sessions.py owns both tables). Keys are SHA-256 of the link's
-- signature and of the session's id: a copy of these rows signs nobody in.
CREATE TABLE ui_used_links (
    link_sha256 text PRIMARY KEY,
    username    text NOT NULL,
    used_at     timestamptz NOT NULL DEFAULT now(),
    -- Kept while the link could still be accepted; forgotten after.
    expires_at  timestamptz NOT NULL
);

CREATE INDEX ui_used_links_expires_at ON ui_used_links (expires_at);

CREATE TABLE ui_sessions (
    session_sha256 text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('customer', 'backoffice')),
    subject        text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    -- Sign-out: the cookie, wherever a copy of it is, no longer opens anything.
    ended_at       timestamptz
);

CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);
