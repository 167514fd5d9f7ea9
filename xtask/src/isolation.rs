//! Runs the test build and the tests with nothing beside the repository, as in a user's lone
//! clone: in a private mount namespace the repository's parent folder is replaced by an empty
//! one that holds only the repository (and cargo's and rustup's homes, when they live there).
//! A path that leaves the repository (a sibling folder of the clone, the bug of issue 19) is
//! then missing at build time (`include_str!`) and at run time alike, while the build still
//! uses the repository's own `target/`: the guard costs no second build.
//!
//! Where no mount namespace can be made (no `unshare`, no privilege for it, a repository at
//! `/`), [`Isolation::for_repo`] says why and `cargo xtask test` falls back to building the
//! schema tests in a lone copy of the tree ([`crate::selfcontained::check`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// How to hide what lies beside the repository.
pub struct Isolation {
    /// The folder replaced by an empty one.
    parent: PathBuf,
    /// What is mounted back into it: the repository first.
    keep: Vec<PathBuf>,
    /// An existing folder, neither in `parent` nor above it, that holds the kept folders while
    /// `parent` is replaced (covered by its own tmpfs inside the namespace).
    stash: PathBuf,
    /// Not root: the namespace needs a user namespace too (`unshare --map-root-user`).
    user_namespace: bool,
}

/// Mounts the kept folders aside, covers the parent with an empty tmpfs, mounts them back,
/// then runs the command in `PVRB_CWD`. The paths come in the environment, one per line.
const SCRIPT: &str = r#"set -euf
IFS='
'
mount -t tmpfs pvrb-stash "$PVRB_STASH"
n=0
for k in $PVRB_KEEP; do mkdir -p "$PVRB_STASH/$n"; mount --rbind "$k" "$PVRB_STASH/$n"; n=$((n+1)); done
mount -t tmpfs -o mode=1777 pvrb-nothing-beside "$PVRB_PARENT"
n=0
for k in $PVRB_KEEP; do mkdir -p "$k"; mount --rbind "$PVRB_STASH/$n" "$k"; n=$((n+1)); done
cd "$PVRB_CWD"
unset IFS PVRB_KEEP PVRB_PARENT PVRB_STASH PVRB_CWD
exec "$@"
"#;

impl Isolation {
    /// The isolation for the repository at `root`, or why there is none here.
    pub fn for_repo(root: &Path) -> Result<Isolation, String> {
        let root = root.canonicalize().map_err(|e| format!("{}: {e}", root.display()))?;
        let parent = root.parent().filter(|p| *p != Path::new("/")).ok_or("the repository sits at /")?;
        let homes = [cargo_home(), rustup_home(), std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)];
        let keep = kept_folders(&root, parent, homes.into_iter().flatten());
        let stash = ["/mnt", "/media", "/srv"]
            .map(PathBuf::from)
            .into_iter()
            .find(|s| s.is_dir() && !s.starts_with(parent) && !parent.starts_with(s))
            .ok_or("no free folder (/mnt, /media, /srv) to hold the kept folders")?;
        let user_namespace = !is_root();
        let isolation = Isolation { parent: parent.to_owned(), keep, stash, user_namespace };
        isolation.check().map_err(|e| format!("{e:#}"))?;
        Ok(isolation)
    }

    /// `cmd` (program, arguments, environment, folder), to run inside the isolation.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut outer = Command::new("unshare");
        if self.user_namespace {
            outer.args(["--user", "--map-root-user"]);
        }
        outer.args(["--mount", "--propagation", "private", "sh", "-c", SCRIPT, "sh"]);
        outer.arg(cmd.get_program()).args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => outer.env(key, v),
                None => outer.env_remove(key),
            };
        }
        let cwd = cmd.get_current_dir().map(Path::to_owned).unwrap_or_else(crate::root);
        let keep: Vec<String> = self.keep.iter().map(|k| k.display().to_string()).collect();
        outer
            .env("PVRB_PARENT", &self.parent)
            .env("PVRB_KEEP", keep.join("\n"))
            .env("PVRB_STASH", &self.stash)
            .env("PVRB_CWD", cwd);
        outer
    }

    /// Proves the isolation works here: inside it, the parent folder holds exactly the kept
    /// folders' first components, and nothing that lies beside the repository outside it.
    pub fn check(&self) -> Result<()> {
        let mut list = Command::new("ls");
        list.arg("-A").arg(&self.parent).current_dir(&self.keep[0]);
        let out = self.wrap(&list).output().context("starting unshare")?;
        if !out.status.success() {
            bail!(
                "unshare could not hide the repository's neighbours: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut seen: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
        let mut expected: Vec<String> = self
            .keep
            .iter()
            .filter_map(|k| k.strip_prefix(&self.parent).ok()?.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        seen.sort();
        expected.sort();
        expected.dedup();
        if seen != expected {
            bail!(
                "inside the isolation {} holds {seen:?}, expected only {expected:?}",
                self.parent.display()
            );
        }
        Ok(())
    }

    /// What the isolation hides, for the log.
    pub fn describe(&self) -> String {
        format!(
            "{} holds only {}",
            self.parent.display(),
            self.keep.iter().map(|k| k.display().to_string()).collect::<Vec<_>>().join(", ")
        )
    }
}

/// The repository, then every home in `parent` that is not inside a folder already kept.
fn kept_folders(root: &Path, parent: &Path, homes: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut keep = vec![root.to_owned()];
    for home in homes {
        let home = home.canonicalize().unwrap_or(home);
        if home.starts_with(parent) && !keep.iter().any(|k| home.starts_with(k)) {
            keep.push(home);
        }
    }
    keep
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| Some(crate::home().join(".cargo")))
}

fn rustup_home() -> Option<PathBuf> {
    std::env::var_os("RUSTUP_HOME").map(PathBuf::from).or_else(|| Some(crate::home().join(".rustup")))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_repository_and_only_the_homes_beside_it() {
        let homes = ["/home/u/.cargo", "/home/u/src/pvrb/target", "/opt/rustup", "/home/u/.rustup"]
            .map(PathBuf::from);
        let keep =
            kept_folders(Path::new("/home/u/src/pvrb"), Path::new("/home/u/src"), homes.clone().into_iter());
        assert_eq!(keep, vec![PathBuf::from("/home/u/src/pvrb")]);
        let keep = kept_folders(Path::new("/home/u/pvrb"), Path::new("/home/u"), homes.into_iter());
        let kept = ["/home/u/pvrb", "/home/u/.cargo", "/home/u/src/pvrb/target", "/home/u/.rustup"];
        assert_eq!(keep, kept.map(PathBuf::from).to_vec());
    }
}
