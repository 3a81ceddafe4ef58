-- The customer registry: who already is a customer or has signed up, so that a
-- later lead for them is `existing_customer`. Each identifier (normalised email,
-- company domain, external id) is stored at most once across the registry: an
-- entry whose identifiers are partly known is stored with only its new ones, and
-- one whose identifiers are all known adds nothing, so loading the same file
-- twice changes nothing.
CREATE TABLE customers (
    id          BLOB PRIMARY KEY,
    -- As given; `email_norm` (lower-case) is what is compared.
    email       TEXT,
    email_norm  TEXT,
    -- Lower-case host name, without `www.`.
    domain      TEXT,
    external_id TEXT,
    source      TEXT NOT NULL CHECK (source IN ('import', 'api', 'event')),
    created_at  INTEGER NOT NULL,
    CHECK ((email IS NULL) = (email_norm IS NULL)),
    CHECK (email_norm IS NOT NULL OR domain IS NOT NULL OR external_id IS NOT NULL)
);
CREATE UNIQUE INDEX customers_email_norm ON customers (email_norm) WHERE email_norm IS NOT NULL;
CREATE UNIQUE INDEX customers_domain ON customers (domain) WHERE domain IS NOT NULL;
CREATE UNIQUE INDEX customers_external_id ON customers (external_id) WHERE external_id IS NOT NULL;
