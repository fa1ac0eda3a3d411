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
            Some(o) if o.protocol == "smtp" => " (via SMTP)",
            _ => "",
        };
        println!("{:<7} {:<24} {:<30} {:>9}  {}{via}", e.cursor, e.received_at, n.sender, n.size, n.id);
    }
}

pub fn queue(v: &serde_json::Value) -> anyhow::Result<()> {
    let Some(jobs) = v["jobs"].as_array() else {
        println!("{v}");
        return Ok(());
    };
    if jobs.is_empty() {
        println!("the queue is empty");
        return Ok(());
    }
    println!(
        "{:<17} {:<8} {:<10} {:<25} {:>8}  {:<30} LAST ERROR",
        "ID", "KIND", "STATE", "DUE", "ATTEMPTS", "RECIPIENT"
    );
    for j in jobs {
        println!(
            "{:<17} {:<8} {:<10} {:<25} {:>8}  {:<30} {}",
            j["id"].as_str().unwrap_or(""),
            j["kind"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or(""),
            j["due"].as_str().unwrap_or(""),
            j["attempts"],
            j["recipient"].as_str().unwrap_or(""),
            j["last_error"].as_str().unwrap_or("")
        );
    }
    Ok(())
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
