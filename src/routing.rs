//! Which side of a migration each local address is on. The routing table
//! lives in the store (seeded from the configuration, changed live with
//! `imgate route set`); a decision looks for the user's own rule, then their
//! domain's, and resolves `auto` by whether the user has a mailbox here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::{Millis, rfc3339};
use crate::config::Route;
use crate::directory::Directory;
use crate::proto::Address;
use crate::store::records::{RouteRecord, RouteSource};

/// The routing table as loaded from the store.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub rules: BTreeMap<String, RouteRecord>,
}

/// Which rule decided a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    User,
    Domain,
    /// Nothing set: IM2000.
    Default,
}

/// A route and why: what `imgate route explain` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub address: String,
    /// `im2000` or `legacy`: never `auto`.
    pub route: Route,
    pub rule: Rule,
    /// The target of the deciding rule (the address key or the domain).
    pub target: String,
    /// The rule's own value (may be `auto`).
    pub configured: Route,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<RouteSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Whether the user has a mailbox here (a password to read an inbox).
    pub mailbox: bool,
}

impl Routes {
    /// The route of `address`, a user of one of `dir`'s domains.
    pub fn route(&self, dir: &Directory, address: &Address) -> Route {
        self.decide(dir, address).route
    }

    pub fn decide(&self, dir: &Directory, address: &Address) -> Decision {
        let key = address.key();
        let domain = address.domain().to_string();
        let (rule, target, record) = match (self.rules.get(&key), self.rules.get(&domain)) {
            (Some(r), _) => (Rule::User, key, Some(r)),
            (None, Some(r)) => (Rule::Domain, domain, Some(r)),
            (None, None) => (Rule::Default, domain, None),
        };
        let configured = record.map_or(Route::Im2000, |r| r.route);
        let mailbox = dir.users.contains(address);
        let route = match configured {
            Route::Auto if mailbox => Route::Im2000,
            Route::Auto => Route::Legacy,
            other => other,
        };
        Decision {
            address: address.to_string(),
            route,
            rule,
            target,
            configured,
            source: record.map(|r| r.source),
            since: record.map(|r| rfc3339(r.since)),
            by: record.and_then(|r| r.by.clone()),
            mailbox,
        }
    }
}

/// What a route change names: a whole domain or one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Domain(String),
    User(Address),
}

impl Target {
    /// The routing table's key.
    pub fn key(&self) -> String {
        match self {
            Target::Domain(d) => d.clone(),
            Target::User(a) => a.key(),
        }
    }

    pub fn domain(&self) -> &str {
        match self {
            Target::Domain(d) => d,
            Target::User(a) => a.domain(),
        }
    }
}

/// Why a route change is refused. The table is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{0:?} is not a route (im2000, legacy or auto)")]
    BadRoute(String),
    #[error("{0:?} is neither a domain nor an address: {1}")]
    BadTarget(String, String),
    #[error("{0} is not one of this node's domains")]
    UnknownDomain(String),
    #[error("{0} has no mailbox here: add a [[user]] with a password before routing them to IM2000")]
    NoMailbox(String),
    #[error("route loop: {0}")]
    Loop(String),
    #[error("cannot reach {0}'s SMTP hosts: {1}")]
    NoHost(String, String),
}

impl RouteError {
    /// The JSON error code.
    pub fn code(&self) -> &'static str {
        match self {
            RouteError::BadRoute(_) => "bad_route",
            RouteError::BadTarget(..) => "bad_target",
            RouteError::UnknownDomain(_) => "unknown_domain",
            RouteError::NoMailbox(_) => "no_mailbox",
            RouteError::Loop(_) => "route_loop",
            RouteError::NoHost(..) => "no_smtp_host",
        }
    }
}

/// Parses and checks a change against the directory (no DNS: see
/// [`check_loop`](crate::smtp_out::hosts::check_loop) for that half).
pub fn check_change(dir: &Directory, target: &str, route: &str) -> Result<(Target, Route), RouteError> {
    let route = Route::parse(route).ok_or_else(|| RouteError::BadRoute(route.to_string()))?;
    let target = if target.contains('@') {
        Target::User(target.parse::<Address>().map_err(|e| RouteError::BadTarget(target.into(), e.to_string()))?)
    } else if crate::proto::address::valid_domain(&target.to_lowercase()) {
        Target::Domain(target.to_lowercase())
    } else {
        return Err(RouteError::BadTarget(target.into(), "not a domain name".into()));
    };
    if !dir.config.is_local_domain(target.domain()) {
        return Err(RouteError::UnknownDomain(target.domain().to_string()));
    }
    if let (Target::User(a), Route::Im2000) = (&target, route)
        && !dir.users.contains(a)
    {
        return Err(RouteError::NoMailbox(a.to_string()));
    }
    Ok((target, route))
}

/// Per-domain figures of a migration: `imgate migration status`.
#[derive(Debug, Clone, Serialize)]
pub struct DomainStatus {
    pub domain: String,
    /// Route of users with no rule of their own.
    pub default_route: Route,
    /// Known users (configured, or with a rule of their own) on each side.
    pub users_im2000: usize,
    pub users_legacy: usize,
    /// Messages and bytes filed for the domain's users in the last day.
    pub last_day: crate::store::Traffic,
}

/// Counts a domain's known users on each side.
pub fn users_by_side(routes: &Routes, dir: &Directory, domain: &str) -> (usize, usize) {
    let mut known: Vec<Address> =
        dir.config.users.iter().filter(|u| u.address.domain() == domain).map(|u| u.address.clone()).collect();
    for target in routes.rules.keys().filter(|t| t.contains('@')) {
        if let Ok(a) = target.parse::<Address>()
            && a.domain() == domain
            && !known.iter().any(|k| k.key() == a.key())
        {
            known.push(a);
        }
    }
    let im2000 = known.iter().filter(|a| routes.route(dir, a) == Route::Im2000).count();
    (im2000, known.len() - im2000)
}

/// Start of the last day, for the traffic counters.
pub fn last_day(now: Millis) -> Millis {
    now.saturating_sub(24 * 3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn dir() -> Directory {
        let text = r#"
            [im2000]
            public = ["127.0.0.1:0"]
            [[domain]]
            name = "mixed.test"
            route = "legacy"
            [[domain]]
            name = "new.test"
            [[user]]
            address = "ann@mixed.test"
            password = "x"
            [[user]]
            address = "bob@mixed.test"
            route = "legacy"
        "#;
        Directory::new(Config::parse(text, "t").unwrap())
    }

    fn rule(route: Route, source: RouteSource) -> RouteRecord {
        RouteRecord { route, since: 0, source, by: None }
    }

    #[test]
    fn user_rule_then_domain_rule_then_im2000() {
        let d = dir();
        let mut routes = Routes::default();
        for (t, r) in d.config.route_seeds() {
            routes.rules.insert(t, rule(r, RouteSource::Config));
        }
        routes.rules.insert("ann@mixed.test".into(), rule(Route::Auto, RouteSource::Admin));
        let cases = [
            ("ann@mixed.test", Route::Im2000, Rule::User), // auto, and ann has a mailbox
            ("Bob@Mixed.test", Route::Legacy, Rule::User), // config rule
            ("carol@mixed.test", Route::Legacy, Rule::Domain),
            ("dave@new.test", Route::Im2000, Rule::Domain),
            ("erin@other.test", Route::Im2000, Rule::Default),
        ];
        for (addr, route, by) in cases {
            let decision = routes.decide(&d, &addr.parse().unwrap());
            assert_eq!((decision.route, decision.rule), (route, by), "{addr}");
        }
    }

    #[test]
    fn changes_are_checked() {
        let d = dir();
        let cases: &[(&str, &str, Result<(), &str>)] = &[
            ("mixed.test", "im2000", Ok(())),
            ("bob@mixed.test", "legacy", Ok(())),
            ("ann@mixed.test", "im2000", Ok(())),
            ("ann@mixed.test", "auto", Ok(())),
            ("mixed.test", "smtp", Err("bad_route")),
            ("zed@elsewhere.test", "legacy", Err("unknown_domain")),
            ("elsewhere.test", "im2000", Err("unknown_domain")),
            ("carol@mixed.test", "im2000", Err("no_mailbox")),
            ("not a domain", "im2000", Err("bad_target")),
            ("@mixed.test", "legacy", Err("bad_target")),
        ];
        for (target, route, want) in cases {
            let got = check_change(&d, target, route).map(drop).map_err(|e| e.code());
            assert_eq!(&got, want, "{target} {route}");
        }
    }
}
