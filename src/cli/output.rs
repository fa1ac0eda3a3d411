//! Human-readable output of the client subcommands.

use crate::proto::api::{InboxEntry, SubmitResponse, TrackResponse};

pub fn submitted(r: &SubmitResponse) -> anyhow::Result<()> {
    println!("message {}  ({} octets, kept until {})", r.message, r.size, r.expires_at);
    for rc in &r.recipients {
        match &rc.reason {
            None => println!("  accepted  {}", rc.recipient),
            Some(why) => println!("  rejected  {}: {why}", rc.recipient),
        }
    }
    for l in &r.lists {
        println!("  list      {}  id {}", l.list, l.id);
    }
    Ok(())
}

pub fn inbox(entries: &[InboxEntry]) {
    if entries.is_empty() {
        println!("no notifications");
        return;
    }
    println!("{:<7} {:<24} {:<30} {:>9}  ID", "CURSOR", "RECEIVED", "FROM", "SIZE");
    for e in entries {
        let n = &e.notification;
        let via = match &n.origin {
            Some(o) if o.protocol == "smtp" => match (&o.dmarc_policy, &o.header_from) {
                // What the From: domain asked for a message that failed its
                // DMARC check: the user sees it before opening it.
                (Some(policy), Some(from)) => format!(" (via SMTP; DMARC fail: {from} asks to {policy} it)"),
                _ => " (via SMTP)".to_string(),
            },
            _ => String::new(),
        };
        println!("{:<7} {:<24} {:<30} {:>9}  {}{via}", e.cursor, e.received_at, n.sender, n.size, n.id);
    }
}

fn text(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or("")
}

pub fn queue(v: &serde_json::Value) {
    let Some(jobs) = v["jobs"].as_array() else {
        println!("{v}");
        return;
    };
    paused(&v["paused"]);
    if jobs.is_empty() {
        println!("no jobs");
        return;
    }
    println!(
        "{:<17} {:<8} {:<10} {:<25} {:>8}  {:<30} {:<22} LAST ERROR",
        "ID", "KIND", "STATE", "DUE", "ATTEMPTS", "RECIPIENT", "HOST"
    );
    for j in jobs {
        println!(
            "{:<17} {:<8} {:<10} {:<25} {:>8}  {:<30} {:<22} {}",
            text(&j["id"]),
            text(&j["kind"]),
            text(&j["state"]),
            text(&j["due"]),
            j["attempts"],
            text(&j["recipient"]),
            text(&j["host"]),
            text(&j["last_error"])
        );
    }
}

/// `queue show`: the job, then one line per attempt.
pub fn job(j: &serde_json::Value) {
    println!("job {}  {}  {}  due {}", text(&j["id"]), text(&j["kind"]), text(&j["state"]), text(&j["due"]));
    println!("  recipient {}  via {}", text(&j["recipient"]), text(&j["host"]));
    println!("  message from {} at store {}, {} octets", text(&j["sender"]), text(&j["store"]), j["size"]);
    let history = j["history"].as_array().map(Vec::as_slice).unwrap_or_default();
    println!("  {} attempt(s){}", j["attempts"], if history.is_empty() { "" } else { ":" });
    for a in history {
        println!("    {}  {:<24} {}", text(&a["at"]), text(&a["host"]), text(&a["result"]));
    }
}

/// Any answer that just says what was done.
pub fn done(v: &serde_json::Value) {
    match v.as_object() {
        Some(o) => println!("{}", o.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")),
        None => println!("{v}"),
    }
}

pub fn paused(p: &serde_json::Value) {
    let hosts: Vec<&str> = p["hosts"].as_array().map(|h| h.iter().map(text).collect()).unwrap_or_default();
    if p["all"].as_bool() == Some(true) {
        println!("the queue is paused (imgate queue resume to go on)");
    } else if !hosts.is_empty() {
        println!("paused for: {}", hosts.join(", "));
    } else if p.is_object() {
        println!("the queue is running");
    }
}

pub fn route_set(v: &serde_json::Value) {
    let previous = v["previous"].as_str().map(|p| format!(" (was {p})")).unwrap_or_default();
    println!(
        "{} now routes {}{previous}; the next message and mail still queued follow it",
        text(&v["target"]),
        text(&v["route"])
    );
}

pub fn routes(v: &serde_json::Value) {
    let rules = v["routes"].as_array().map(Vec::as_slice).unwrap_or_default();
    if rules.is_empty() {
        println!("no rules: everyone is on IM2000");
        return;
    }
    println!("{:<36} {:<7} {:<7} {:<25} BY", "TARGET", "ROUTE", "SOURCE", "SINCE");
    for r in rules {
        println!(
            "{:<36} {:<7} {:<7} {:<25} {}",
            text(&r["target"]),
            text(&r["route"]),
            text(&r["source"]),
            text(&r["since"]),
            text(&r["by"])
        );
    }
}

pub fn explain(d: &serde_json::Value) {
    println!("{} → {}", text(&d["address"]), text(&d["route"]));
    let rule = match text(&d["rule"]) {
        "user" => format!("the user's own rule ({})", text(&d["target"])),
        "domain" => format!("the domain rule for {}", text(&d["target"])),
        _ => "no rule: IM2000 by default".to_string(),
    };
    println!("  decided by {rule}");
    if let Some(source) = d["source"].as_str() {
        let by = d["by"].as_str().map(|b| format!(" by {b}")).unwrap_or_default();
        println!("  set in the {source}{by}, since {}", text(&d["since"]));
    }
    if text(&d["configured"]) == "auto" {
        let has = if d["mailbox"].as_bool() == Some(true) { "has" } else { "has no" };
        println!("  the rule says auto, and the user {has} a mailbox here");
    }
}

pub fn migration(v: &serde_json::Value) {
    println!(
        "{:<28} {:<8} {:>7} {:>7}  {:>9} {:>12}  {:>9} {:>12}",
        "DOMAIN", "DEFAULT", "USERS-I", "USERS-L", "MSGS-I/D", "BYTES-I/D", "MSGS-L/D", "BYTES-L/D"
    );
    for d in v["domains"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let t = &d["last_day"];
        println!(
            "{:<28} {:<8} {:>7} {:>7}  {:>9} {:>12}  {:>9} {:>12}",
            text(&d["domain"]),
            text(&d["default_route"]),
            d["users_im2000"],
            d["users_legacy"],
            t["im2000_messages"],
            t["im2000_bytes"],
            t["legacy_messages"],
            t["legacy_bytes"]
        );
    }
    println!("(I = IM2000, L = legacy SMTP, /D = filed in the last 24 hours)");
}

pub fn track(t: &TrackResponse) -> anyhow::Result<()> {
    println!("message {}  from {}  {} octets  {}", t.message, t.sender, t.size, t.state);
    println!("submitted {}  expires {}", t.submitted_at, t.expires_at);
    println!("{:<32} {:<14} {:<8} {:<7} {:>8}  DETAIL", "RECIPIENT", "NOTIFICATION", "READ", "PINNED", "ATTEMPTS");
    for r in &t.recipients {
        let detail = r.reason.clone().unwrap_or_default();
        println!(
            "{:<32} {:<14} {:<8} {:<7} {:>8}  {detail}",
            r.recipient,
            r.notification.as_str(),
            r.read.as_str(),
            if r.pinned { "yes" } else { "no" },
            r.attempts
        );
    }
    Ok(())
}
