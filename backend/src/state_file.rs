//! Cluster-wide state files in `--state-dir` (pmxcfs by default: every node reads the same
//! bytes). A reader on another node must never see half a file, so every write is a complete
//! temporary file, synced, then renamed over the old one.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `dir/name` with `bytes` atomically (mode 0640; `dir` is created 0750 if missing).
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&tmp)?;
        // pmxcfs ignores chmod, a local file system honours it (the umask may have narrowed).
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640));
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_with_mode_0640_and_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("pve-rebalancer-state-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_atomically(&dir.join("sub"), "x.json", b"{\"a\":1}").unwrap();
        write_atomically(&dir.join("sub"), "x.json", b"{}").unwrap();
        let path = dir.join("sub/x.json");
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        let names: Vec<_> =
            std::fs::read_dir(dir.join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["x.json"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
