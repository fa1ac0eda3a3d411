//! The `imgate` command line: `serve` and `check-config` for operators, and
//! client subcommands (`send`, `inbox`, `fetch`, `track`, `cancel`) that speak
//! the same HTTP API as any other IM2000 client.

mod api;
mod commands;
mod compare;
pub mod dns;
mod evidence;
mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use commands::run_client;

#[derive(Debug, Parser)]
#[command(name = "imgate", version, about = "SMTP <-> IM2000 gateway: an IM2000 message store and notification agent")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node (embedded defaults from config/imgate.toml without --config).
    Serve {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Check a configuration file and report every problem in it.
    CheckConfig { file: PathBuf },
    /// Hash a password (read from standard input) for a `password_hash` key.
    HashPassword,
    /// Print the DNS records (zone-file syntax) the node's domains should publish.
    DnsRecords {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// One domain (default: every configured domain).
        domain: Option<String>,
    },
    /// Write a new DKIM private key and print the TXT record that publishes it.
    DkimKeygen {
        /// The domain it signs for.
        #[arg(long)]
        domain: String,
        /// The selector (`<selector>._domainkey.<domain>`), e.g. the year.
        #[arg(long)]
        selector: String,
        /// rsa (2048 bits; every receiver verifies it) or ed25519 (RFC 8463).
        #[arg(long, default_value = "rsa", value_parser = ["rsa", "ed25519"])]
        algorithm: String,
        /// Where to write the key (PEM, mode 0600; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Resolve what DOMAIN publishes and say what is missing or points elsewhere.
    DnsCheck {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        domain: String,
    },
    /// Submit a message (RFC 5322 file, or - for standard input).
    Send {
        #[command(flatten)]
        conn: Conn,
        /// The sender: a user of the node.
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: Vec<String>,
        /// Publish to a list of the sender's domain as well.
        #[arg(long)]
        list: Vec<String>,
        /// How long the store keeps it, e.g. 7d (default: the node's).
        #[arg(long)]
        lifetime: Option<String>,
        file: String,
    },
    /// List the notifications waiting for USER.
    Inbox {
        #[command(flatten)]
        conn: Conn,
        user: String,
        /// Only what came after this cursor.
        #[arg(long)]
        after: Option<String>,
        /// Clear the listed notifications from the inbox afterwards.
        #[arg(long)]
        clear: bool,
    },
    /// Retrieve a notified message from its sender's store, then silence and un-pin it.
    Fetch {
        #[command(flatten)]
        conn: Conn,
        user: String,
        /// The message identifier from `imgate inbox`.
        id: String,
        /// Write the message here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Do not silence or un-pin (the store keeps the copy for you).
        #[arg(long)]
        keep: bool,
    },
    /// Show the per-recipient status of a message you sent.
    Track {
        #[command(flatten)]
        conn: Conn,
        msg: String,
        #[arg(long)]
        user: Option<String>,
    },
    /// Look at and act on the job queue (admin users).
    Queue {
        #[command(flatten)]
        conn: Conn,
        /// The admin user (default: the configuration's only admin).
        #[arg(long, global = true)]
        user: Option<String>,
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Which users and domains are on IM2000 and which on SMTP (admin users).
    Route {
        #[command(flatten)]
        conn: Conn,
        /// The admin user (default: the configuration's only admin).
        #[arg(long, global = true)]
        user: Option<String>,
        #[command(subcommand)]
        action: RouteAction,
    },
    /// How far each domain's move to IM2000 has come (admin users).
    Migration {
        #[command(flatten)]
        conn: Conn,
        /// The admin user (default: the configuration's only admin).
        #[arg(long, global = true)]
        user: Option<String>,
        #[command(subcommand)]
        action: MigrationAction,
    },
    /// Run scenarios through the SMTP and the IM2000 model in an in-process
    /// lab and show what each party stored, what crossed the network, and
    /// what the sender could see.
    Compare {
        /// A built-in scenario's name or a scenario file (repeatable; default:
        /// every built-in scenario).
        #[arg(long, value_name = "NAME|FILE")]
        scenario: Vec<String>,
        /// Print the reports as JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// Write an SVG chart of stored and transferred bytes per party
        /// (with several scenarios, one file each: FILE's name + scenario).
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// List the built-in scenarios and exit.
        #[arg(long)]
        list: bool,
    },
    /// Recall a message you sent: later retrievals are refused.
    Cancel {
        #[command(flatten)]
        conn: Conn,
        msg: String,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Queued jobs (notifications and SMTP deliveries), soonest first.
    List {
        /// running, held, due or scheduled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        recipient: Option<String>,
        /// A recipient domain, or a legacy host (HOST:PORT) as configured.
        #[arg(long)]
        host: Option<String>,
    },
    /// One job and every attempt at it, with its time and the reply.
    Show { id: String },
    /// Make a waiting job (or --all, or every job for --host) due now.
    Retry {
        #[arg(required_unless_present_any = ["all", "host"], conflicts_with_all = ["all", "host"])]
        id: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long, conflicts_with = "all")]
        host: Option<String>,
    },
    /// Remove a waiting job for good.
    Drop { id: String },
    /// Hold back every job, or those for one host, until resumed.
    Pause {
        #[arg(long)]
        host: Option<String>,
    },
    /// Undo a pause; held jobs become due at once.
    Resume {
        #[arg(long)]
        host: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RouteAction {
    /// Route a user (ADDRESS) or a whole DOMAIN: im2000, legacy or auto.
    /// Applies to the next message at once, and to mail still queued.
    Set { target: String, route: String },
    /// Every rule of the routing table, with who set it and since when.
    List,
    /// Which route ADDRESS takes, and which rule decided it.
    Explain { address: String },
}

#[derive(Debug, Subcommand)]
pub enum MigrationAction {
    /// Per domain: users and the last day's mail on each side.
    Status,
}

/// How a client subcommand reaches its node. Global: a command group's
/// options work wherever the user puts them (`imgate queue list --json`).
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The node's configuration: its private listener, DNS, and users' passwords.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The node's private listener, e.g. http://127.0.0.1:2581.
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_options_work_wherever_they_are_typed() {
        let cases: &[&[&str]] = &[
            &["imgate", "queue", "--config", "c.toml", "--json", "--user", "ops@a.test", "list"],
            &["imgate", "queue", "list", "--json", "--config", "c.toml", "--user", "ops@a.test"],
            &["imgate", "queue", "--config", "c.toml", "list", "--user", "ops@a.test", "--json"],
        ];
        for args in cases {
            let cli = Cli::try_parse_from(*args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let Command::Queue { conn, user, action: QueueAction::List { .. } } = cli.command else {
                panic!("{args:?}: not queue list");
            };
            assert!(conn.json, "{args:?}");
            assert_eq!(conn.config.as_deref(), Some(std::path::Path::new("c.toml")), "{args:?}");
            assert_eq!(user.as_deref(), Some("ops@a.test"), "{args:?}");
        }
    }
}
