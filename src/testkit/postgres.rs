//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory and
//! `postgres` on a loopback port, run as `nobody` when the tests run as
//! root (PostgreSQL refuses root). A test process shares one cluster
//! ([`database`] gives each caller a database of its own); it dies with the
//! process. PostgreSQL missing is a failure that says how to install it,
//! never a test that passes without running.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::store::backend::postgres::{Postgres, Settings};

/// The server's programs: `$IMGATE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IMGATE_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "these tests need a PostgreSQL server: `apt-get install postgresql-15` (or set IMGATE_PG_BIN to its bin directory)"
        ),
    }
}

/// Who runs the server: `nobody` under root, else the current user.
fn server_user() -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("nobody").ok().flatten().expect("a `nobody` user to run PostgreSQL as");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// A running cluster; stopped (immediately) when dropped.
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

/// A new directory for a cluster, owned by the server's user.
fn new_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir =
        std::env::temp_dir().join(format!("imgate-pg-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    if let Some((uid, gid)) = server_user() {
        nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into())).unwrap();
    }
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Creates and starts a cluster under a new directory. With
    /// `die_with_thread`, the server is killed when the calling thread ends.
    pub fn start(die_with_thread: bool) -> Cluster {
        let dir = new_dir();
        let bin = bin_dir();
        let out = as_server_user(Command::new(bin.join("initdb")).current_dir(&dir))
            .args(["--auth=trust", "--username=imgate", "--encoding=UTF8", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut cluster = Cluster { dir, port: free_port(), child: None };
        cluster.launch(die_with_thread);
        cluster
    }

    /// A streaming-replication standby of this cluster, made from a base
    /// backup and started on a port of its own. The primary confirms a
    /// commit only once a synchronous standby has it once
    /// `synchronous_standby_names` is set.
    pub fn standby(&self) -> Cluster {
        let dir = new_dir();
        let out = as_server_user(Command::new(bin_dir().join("pg_basebackup")).current_dir(&dir))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "imgate",
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .expect("pg_basebackup runs");
        assert!(out.status.success(), "pg_basebackup failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut standby = Cluster { dir, port: free_port(), child: None };
        standby.launch(false);
        standby
    }

    /// Makes a standby the primary (`pg_ctl promote`), waiting until it takes writes.
    pub fn promote(&self) {
        let out = as_server_user(Command::new(bin_dir().join("pg_ctl")).current_dir(&self.dir))
            .args(["promote", "-w", "-D"])
            .arg(self.dir.join("data"))
            .output()
            .expect("pg_ctl runs");
        assert!(out.status.success(), "pg_ctl promote failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn launch(&mut self, die_with_thread: bool) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        if let Some((uid, gid)) = server_user() {
            nix::unistd::chown(&self.dir.join("server.log"), Some(uid.into()), Some(gid.into())).unwrap();
        }
        // setpriv (util-linux) asks the kernel to kill the server when the
        // thread that started it ends.
        let mut cmd = if die_with_thread {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(bin_dir().join("postgres"));
            c
        } else {
            Command::new(bin_dir().join("postgres"))
        };
        as_server_user(&mut cmd)
            .current_dir(&self.dir)
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", &format!("port={}", self.port)])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "max_connections=300", "-c", "fsync=on"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("postgres starts"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin_dir().join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "imgate"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(Instant::now() < deadline, "postgres did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://imgate@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql against database `db`; panics on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        psql(&self.url(db), sql)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port after [`Cluster::kill`].
    pub fn restart(&mut self) {
        self.kill();
        // A killed postmaster leaves its backends to notice and exit.
        let pid_file = self.dir.join("data/postmaster.pid");
        let deadline = Instant::now() + Duration::from_secs(30);
        while pid_file.exists() && Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.launch(false);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Clusters left by test processes that are gone.
fn remove_stale(tmp: &Path) {
    for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("imgate-pg-")).and_then(|r| r.split('-').next())
        else {
            continue;
        };
        let alive = pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The test process's cluster, started on first use by a thread that lives
/// as long as the process (the server dies with that thread).
pub fn shared() -> &'static (String, u16) {
    static SHARED: OnceLock<(String, u16)> = OnceLock::new();
    SHARED.get_or_init(|| {
        remove_stale(&std::env::temp_dir());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-parent".into())
            .spawn(move || {
                let cluster = Cluster::start(true);
                tx.send((cluster.dir.display().to_string(), cluster.port)).unwrap();
                // Kept (never dropped) until the process ends.
                let _keep = cluster;
                loop {
                    std::thread::park();
                }
            })
            .unwrap();
        rx.recv().expect("the shared PostgreSQL cluster starts")
    })
}

/// A database of its own in the shared cluster.
pub struct Database {
    pub url: String,
}

impl Database {
    pub fn settings(&self) -> Settings {
        Settings { url: self.url.clone(), max_connections: 8, timeout: Duration::from_secs(10) }
    }

    pub fn open(&self) -> Postgres {
        Postgres::open(&self.settings()).expect("the test database opens")
    }
}

/// Runs SQL with psql against the database at `url`; panics on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new(bin_dir().join("psql"))
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A new empty database in the shared cluster.
pub fn database() -> Database {
    static N: AtomicU32 = AtomicU32::new(0);
    let (_, port) = shared();
    let name = format!("t{}", N.fetch_add(1, Ordering::Relaxed));
    let url = |db: &str| format!("postgres://imgate@127.0.0.1:{port}/{db}");
    psql(&url("postgres"), &format!("CREATE DATABASE {name}"));
    Database { url: url(&name) }
}
