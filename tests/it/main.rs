//! imgate's one integration-test binary: features tested end to end over
//! real sockets, with real DNS, between several nodes.

mod bad_input;
mod capture;
mod cli;
mod cluster;
mod crash;
mod disk_full;
mod harness;
mod hostile_clients;
mod hostile_peers;
mod imap;
mod lab;
mod legacy;
mod migration;
mod notify;
mod postgres;
mod recipient_access;
mod sender_auth;
mod smtp;
mod tls;
