//! Real servers for tests, started and thrown away by the tests themselves:
//! a PostgreSQL cluster run as an unprivileged user. Not part of the
//! gateway; public so that the end-to-end tests share it with the unit tests.

pub mod postgres;
