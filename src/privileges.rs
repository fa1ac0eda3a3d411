//! Dropping root after binding: started as root with `run_as = "USER"`,
//! imgate binds its listeners (port 25 among them), hands the data
//! directory to USER, and becomes USER before it opens anything else.

use std::path::Path;

use nix::unistd::{Gid, Uid, User, chown, geteuid, setgid, setgroups, setuid};

/// Becomes `user`, giving it `data_dir`; a no-op when not running as root.
pub fn drop_to(user: &str, data_dir: &Path) -> Result<(), String> {
    if !geteuid().is_root() {
        tracing::info!(user, "not running as root: run_as has nothing to drop");
        return Ok(());
    }
    let u = User::from_name(user)
        .map_err(|e| format!("run_as: looking up {user}: {e}"))?
        .ok_or_else(|| format!("run_as: no user {user} on this system"))?;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("data directory {}: {e}", data_dir.display()))?;
    give(data_dir, u.uid, u.gid)?;
    setgroups(&[u.gid]).map_err(|e| format!("run_as: setgroups: {e}"))?;
    setgid(u.gid).map_err(|e| format!("run_as: setgid: {e}"))?;
    setuid(u.uid).map_err(|e| format!("run_as: setuid: {e}"))?;
    tracing::info!(user, uid = u.uid.as_raw(), "dropped root after binding the listeners");
    Ok(())
}

/// `chown -R` of what the data directory holds (it may have been written as
/// root before), without following symbolic links.
fn give(path: &Path, uid: Uid, gid: Gid) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    chown(path, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", path.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
            give(&entry.map_err(|e| e.to_string())?.path(), uid, gid)?;
        }
    }
    Ok(())
}
