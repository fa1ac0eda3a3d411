//! imgate — an SMTP ⇄ IM2000 gateway. This crate is a working IM2000 node:
//! a sender-stores message store and a notification agent over HTTP.
//!
//! Codemap, in the order data flows (see docs/ARCHITECTURE.md):
//!
//! - [`config`] — TOML → validated [`config::Config`], every problem at once.
//! - [`privileges`] — dropping root after binding (`run_as`).
//! - [`node`] — starts a node: store, listeners, queue worker; stops it.
//! - [`im2000`] — the HTTP services (recipient access, notification
//!   submission, originator access, notification query).
//! - [`peer`] — the same binding's client side, toward other nodes.
//! - [`directory`] — the domains and users, passwords as argon2 hashes.
//! - [`smtp_in`] — SMTP MX and submission listeners: mail in, stored once.
//! - [`routing`] — which users and domains are on IM2000 and which still on
//!   SMTP: the live routing table and migration figures.
//! - [`smtp_out`] — delivery to legacy SMTP hosts for recipients still on SMTP.
//! - [`queue`] — the durable job worker: notifications, retries, expiry.
//! - [`store`] — the durable state on RocksDB or PostgreSQL; [`store::schema`]
//!   is the one file with the layout.
//! - [`discovery`] / [`dns`] — where a domain's services are (SRV, peers).
//! - [`metrics`] — Prometheus counters and gauges (`GET /metrics`).
//! - [`limits`] — rate limits on failed authentications and unknown identifiers.
//! - [`listen`] — binding and accepting, shared by HTTP and SMTP.
//! - [`proto`] — wire vocabulary and codecs, no IO.
//! - [`clock`] — injectable time.
//! - [`lab`] — the comparison lab: the same traffic through SMTP and IM2000,
//!   measured per party (`imgate compare`).
//! - [`cli`] — the `imgate` command's client subcommands.

pub mod backoff;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod directory;
pub mod discovery;
pub mod dns;
pub mod follow;
pub mod im2000;
pub mod imap;
pub mod lab;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod peer;
pub mod privileges;
#[cfg(test)]
mod properties;
pub mod proto;
pub mod queue;
pub mod routing;
pub mod smtp_in;
pub mod smtp_out;
pub mod store;
#[doc(hidden)]
pub mod testkit;
