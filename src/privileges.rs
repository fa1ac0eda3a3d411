//! Dropping root after binding: started as root with `run_as = "USER"`,
//! imgate binds its listeners (port 25 among them), hands the data
//! directory to USER, and becomes USER before it opens anything else.

use std::path::Path;

use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::unistd::{Gid, Uid, User, fchownat, geteuid, setgid, setgroups, setuid};

/// Becomes `user`, giving it `data_dir`; a no-op when not running as root.
pub fn drop_to(user: &str, data_dir: &Path) -> Result<(), String> {
    refuse_linked(data_dir)?;
    if !geteuid().is_root() {
        tracing::info!(user, "not running as root: run_as has nothing to drop");
        return Ok(());
    }
    let u = User::from_name(user)
        .map_err(|e| format!("run_as: looking up {user}: {e}"))?
        .ok_or_else(|| format!("run_as: no user {user} on this system"))?;
    std::fs::create_dir_all(data_dir).map_err(|e| format!("data directory {}: {e}", data_dir.display()))?;
    refuse_linked(data_dir)?;
    give(data_dir, u.uid, u.gid)?;
    setgroups(&[u.gid]).map_err(|e| format!("run_as: setgroups: {e}"))?;
    setgid(u.gid).map_err(|e| format!("run_as: setgid: {e}"))?;
    setuid(u.uid).map_err(|e| format!("run_as: setuid: {e}"))?;
    tracing::info!(user, uid = u.uid.as_raw(), "dropped root after binding the listeners");
    Ok(())
}

/// Handing over whatever a link points at could give USER any file: the
/// data directory must be the real directory.
fn refuse_linked(data_dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(data_dir) {
        Ok(meta) if meta.file_type().is_symlink() => Err(format!(
            "data_dir {} is a symbolic link; name the real directory (run_as will not chown through links)",
            data_dir.display()
        )),
        _ => Ok(()),
    }
}

/// `chown -R` of what the data directory holds (it may have been written as
/// root before), without following symbolic links: links are skipped, and
/// the change itself never follows one (`lchown`), so a link swapped in
/// after the check still gives nothing away.
fn give(path: &Path, uid: Uid, gid: Gid) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    fchownat(AT_FDCWD, path, Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
            give(&entry.map_err(|e| e.to_string())?.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_data_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("data");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = drop_to("nobody", &link).unwrap_err();
        assert!(err.contains("is a symbolic link"), "{err}");
    }
}
