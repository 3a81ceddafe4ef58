//! Integration tests of the server over HTTP, one binary: every test starts a
//! server per engine (SQLite always, Postgres when `VOUCH_TEST_DATABASE_URL` is
//! set) and talks to it as a client would.

mod api;
mod customers;
mod events;
mod helpers;
mod holds;
mod idempotency;
mod invites;
mod mail;
mod notifications;
mod openapi;
mod payouts;
mod programs;
mod redirect;
mod referrals;
mod rewards;
mod simulate;
mod smtp;
mod triggers;
