//! Authentication (tickets, CSRF tokens, API tokens) and ACL privilege checks.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use ring::hmac;

use crate::scenario::{AclSpec, UserSpec};

/// Every privilege the simulator knows (the ones `Administrator` has).
pub const ALL_PRIVS: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// Privileges of a built-in role (or None for an unknown role).
pub fn role_privs(role: &str) -> Option<BTreeSet<String>> {
    let v: Vec<&str> = match role {
        "Administrator" => ALL_PRIVS.to_vec(),
        "NoAccess" => vec![],
        "PVEAuditor" => vec![
            "Datastore.Audit",
            "Mapping.Audit",
            "Pool.Audit",
            "SDN.Audit",
            "Sys.Audit",
            "VM.Audit",
            "VM.GuestAgent.Audit",
        ],
        "PVEVMAdmin" => ALL_PRIVS.iter().copied().filter(|p| p.starts_with("VM.")).collect(),
        "PVEVMUser" => vec!["VM.Audit", "VM.Console", "VM.PowerMgmt", "VM.Backup", "VM.Config.CDROM"],
        "PVESysAdmin" => vec!["Sys.Audit", "Sys.Console", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog"],
        "PVEDatastoreUser" => vec!["Datastore.AllocateSpace", "Datastore.Audit"],
        "PVEPoolUser" => vec!["Pool.Audit"],
        _ => return None,
    };
    Some(v.into_iter().map(String::from).collect())
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `user@realm`
    pub userid: String,
    /// Full token id `user@realm!name` when authenticated by API token.
    pub tokenid: Option<String>,
    /// Authenticated by ticket (then CSRF applies to non-GET requests).
    pub by_ticket: bool,
}

impl Identity {
    /// What PVE writes into UPIDs and task lists.
    pub fn task_user(&self) -> String {
        self.tokenid.clone().unwrap_or_else(|| self.userid.clone())
    }
}

/// Signing secrets: tickets with a random HMAC key (PVE signs them with RSA; only the simulator
/// checks them), CSRF tokens exactly as PVE makes them, from the contents of a `pve-www.key`
/// the simulator generates (and writes to a file, see `RunningSim::csrf_key`), so a service
/// that verifies CSRF tokens with that file checks real signatures end to end.
pub struct Signer {
    key: hmac::Key,
    /// The stand-in for `/etc/pve/priv/pve-www.key` (PVE's is an RSA key in PEM; only its
    /// bytes matter: they are hashed into the CSRF secret).
    www_key: Vec<u8>,
    /// The HMAC key CSRF tokens are signed with, derived from `www_key` as PVE derives it.
    csrf_key: hmac::Key,
}

impl Default for Signer {
    fn default() -> Self {
        Self::new()
    }
}

/// Constant-time comparison.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(data)
}

/// PVE's CSRF signing key for the contents of `pve-www.key`: the HMAC-SHA256 of nothing keyed
/// with the file's bytes (Perl's `hmac_sha256_base64($input)`: the last argument is the key),
/// base64 without padding, whose text is the key.
pub fn csrf_key_of(www_key: &[u8]) -> hmac::Key {
    let secret = b64(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, www_key), b"").as_ref());
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// A CSRF token for `userid` issued at `now`, signed from the key file contents `www_key` as
/// PVE signs it (tests sign expired or other users' tokens with the simulator's key file).
pub fn csrf_token(www_key: &[u8], userid: &str, now: i64) -> String {
    let t = format!("{now:08X}");
    let sig = b64(hmac::sign(&csrf_key_of(www_key), format!("{t}:{userid}").as_bytes()).as_ref());
    format!("{t}:{sig}")
}

/// PVE's CSRF token age window: issued at most 5 minutes in the future (clock skew), at most
/// the ticket lifetime (2 h) ago, both bounds exclusive.
pub const CSRF_MIN_AGE: i64 = -300;
pub const CSRF_MAX_AGE: i64 = 7200;

impl Signer {
    pub fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system RNG");
        let mut raw = [0u8; 96];
        ring::rand::SecureRandom::fill(&rng, &mut raw).expect("system RNG");
        let www_key = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
        .into_bytes();
        let csrf_key = csrf_key_of(&www_key);
        Signer { key, www_key, csrf_key }
    }

    /// The `pve-www.key` contents CSRF tokens derive from.
    pub fn www_key(&self) -> &[u8] {
        &self.www_key
    }

    fn sign(&self, data: &str) -> String {
        b64(hmac::sign(&self.key, data.as_bytes()).as_ref())
    }

    /// `PVE:<userid>:<8-hex time>::<sig>`
    pub fn ticket(&self, userid: &str, now: i64) -> String {
        let data = format!("PVE:{}:{:08X}", userid.replace(':', "%3A"), now);
        let sig = self.sign(&data);
        format!("{data}::{sig}")
    }

    /// Verifies a ticket; returns (userid, issue time).
    pub fn verify_ticket(&self, ticket: &str) -> Option<(String, i64)> {
        let (data, sig) = ticket.split_once("::")?;
        let expected = self.sign(data);
        if !ct_eq(expected.as_bytes(), sig.as_bytes()) {
            return None;
        }
        let rest = data.strip_prefix("PVE:")?;
        let (user, time) = rest.rsplit_once(':')?;
        if time.len() != 8 {
            return None;
        }
        let t = i64::from_str_radix(time, 16).ok()?;
        Some((user.replace("%3A", ":"), t))
    }

    fn csrf_sig(&self, time: &str, userid: &str) -> String {
        b64(hmac::sign(&self.csrf_key, format!("{time}:{userid}").as_bytes()).as_ref())
    }

    /// `<8 upper-case hex digits of time>:<base64 HMAC-SHA256 of "time:userid">`, as PVE.
    pub fn csrf(&self, userid: &str, now: i64) -> String {
        let t = format!("{now:08X}");
        let sig = self.csrf_sig(&t, userid);
        format!("{t}:{sig}")
    }

    /// PVE's check: the token's form, its signature for `userid`, and its age within
    /// (`CSRF_MIN_AGE`, `lifetime`) (PVE: the ticket lifetime, `CSRF_MAX_AGE`).
    pub fn verify_csrf(&self, token: &str, userid: &str, now: i64, lifetime: i64) -> bool {
        let Some((t, sig)) = token.split_once(':') else { return false };
        if t.len() != 8 || !t.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
            return false;
        }
        if !ct_eq(self.csrf_sig(t, userid).as_bytes(), sig.as_bytes()) {
            return false;
        }
        let Ok(time) = i64::from_str_radix(t, 16) else { return false };
        let age = now - time;
        age > CSRF_MIN_AGE && age < lifetime
    }
}

/// Parses `PVEAPIToken=user@realm!tokenid=secret` (also with a space instead of the second `=`).
pub fn parse_token_header(v: &str) -> Option<(String, String, String)> {
    let rest = v.trim().strip_prefix("PVEAPIToken")?;
    let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix(' '))?.trim_start();
    let (full, secret) = match rest.split_once('=') {
        Some((a, b)) if !a.contains(' ') => (a, b),
        _ => rest.split_once(' ')?,
    };
    let (user, tok) = full.split_once('!')?;
    if !user.contains('@') || tok.is_empty() || secret.is_empty() {
        return None;
    }
    Some((user.to_string(), tok.to_string(), secret.trim().to_string()))
}

/// Extracts `PVEAuthCookie` from a Cookie header value (URI-decoded).
pub fn cookie_ticket(cookie_header: &str) -> Option<String> {
    cookie_header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == "PVEAuthCookie")
            .then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

/// ACL evaluation over users, tokens and ACL entries.
pub struct Acl<'a> {
    pub users: &'a [UserSpec],
    pub acls: &'a [AclSpec],
}

fn path_is_ancestor(anc: &str, path: &str) -> bool {
    if anc == "/" {
        return true;
    }
    path == anc || path.starts_with(&format!("{anc}/"))
}

impl Acl<'_> {
    pub fn user(&self, userid: &str) -> Option<&UserSpec> {
        self.users.iter().find(|u| u.userid == userid && u.enable)
    }

    /// Privileges of `ugid` (user or token) on `path` from ACL entries alone.
    fn acl_privs(&self, ugid: &str, path: &str) -> BTreeSet<String> {
        // the most specific matching entry wins; propagate=0 only applies to the exact path
        let mut best: Option<(usize, BTreeSet<String>)> = None;
        for a in self.acls.iter().filter(|a| a.ugid == ugid) {
            let applies = a.path == path || (a.propagate && path_is_ancestor(&a.path, path));
            if !applies {
                continue;
            }
            let depth = if a.path == "/" { 0 } else { a.path.matches('/').count() };
            let mut privs: BTreeSet<String> = a.privs.iter().cloned().collect();
            if let Some(r) = &a.role {
                privs.extend(role_privs(r).unwrap_or_default());
            }
            match &mut best {
                Some((d, p)) if *d == depth => p.extend(privs),
                Some((d, _)) if *d > depth => {}
                _ => best = Some((depth, privs)),
            }
        }
        best.map(|b| b.1).unwrap_or_default()
    }

    /// Effective privileges of an identity on a path.
    pub fn privs(&self, id: &Identity, path: &str) -> BTreeSet<String> {
        let user_privs = if id.userid == "root@pam" {
            ALL_PRIVS.iter().map(|s| s.to_string()).collect()
        } else {
            self.acl_privs(&id.userid, path)
        };
        match &id.tokenid {
            None => user_privs,
            Some(tid) => {
                let privsep = self
                    .user(&id.userid)
                    .and_then(|u| u.tokens.iter().find(|t| format!("{}!{}", id.userid, t.id) == *tid))
                    .map(|t| t.privsep)
                    .unwrap_or(true);
                if privsep {
                    let tp = self.acl_privs(tid, path);
                    user_privs.intersection(&tp).cloned().collect()
                } else {
                    user_privs
                }
            }
        }
    }

    pub fn has(&self, id: &Identity, path: &str, privilege: &str) -> bool {
        if id.userid == "root@pam" && id.tokenid.is_none() {
            return ALL_PRIVS.contains(&privilege);
        }
        self.privs(id, path).contains(privilege)
    }

    /// `GET /access/permissions` answer: path → {priv → propagate(1)}.
    pub fn permissions_map(&self, id: &Identity) -> BTreeMap<String, BTreeMap<String, u8>> {
        let mut paths: BTreeSet<String> =
            ["/", "/access", "/nodes", "/pool", "/sdn", "/storage", "/vms", "/mapping"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        for a in self.acls {
            if a.ugid == id.userid || Some(&a.ugid) == id.tokenid.as_ref() {
                paths.insert(a.path.clone());
            }
        }
        let mut out = BTreeMap::new();
        for p in paths {
            let privs = self.privs(id, &p);
            if !privs.is_empty() {
                out.insert(p, privs.into_iter().map(|x| (x, 1u8)).collect());
            }
        }
        out
    }

    /// Checks a password login; `Some(userid)` on success.
    pub fn check_password(&self, username: &str, realm: Option<&str>, password: &str) -> Option<String> {
        let userid = if username.contains('@') {
            username.to_string()
        } else {
            format!("{username}@{}", realm.unwrap_or("pam"))
        };
        let u = self.user(&userid)?;
        (u.password.as_deref() == Some(password)).then_some(userid)
    }

    /// Checks an API token; `Some(Identity)` on success.
    pub fn check_token(&self, user: &str, tok: &str, secret: &str) -> Option<Identity> {
        let u = self.user(user)?;
        let t = u.tokens.iter().find(|t| t.id == tok)?;
        (t.secret == secret).then(|| Identity {
            userid: user.to_string(),
            tokenid: Some(format!("{user}!{tok}")),
            by_ticket: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_roundtrip() {
        let s = Signer::new();
        let t = s.ticket("root@pam", 0x6000_0000);
        assert!(t.starts_with("PVE:root@pam:60000000::"));
        assert_eq!(s.verify_ticket(&t), Some(("root@pam".into(), 0x6000_0000)));
        assert!(s.verify_ticket(&t.replace("root", "toor")).is_none());
        let c = s.csrf("root@pam", 0x6B00_0000);
        assert!(c.starts_with("6B000000:"), "{c}");
        assert!(s.verify_csrf(&c, "root@pam", 0x6B00_0000, CSRF_MAX_AGE));
        assert!(!s.verify_csrf(&c, "other@pam", 0x6B00_0000, CSRF_MAX_AGE), "bound to the user");
        assert!(s.verify_csrf(&c, "root@pam", 0x6B00_0000 + CSRF_MAX_AGE - 1, CSRF_MAX_AGE));
        assert!(!s.verify_csrf(&c, "root@pam", 0x6B00_0000 + CSRF_MAX_AGE, CSRF_MAX_AGE), "expired");
        assert!(!s.verify_csrf(&c, "root@pam", 0x6B00_0000 + CSRF_MIN_AGE, CSRF_MAX_AGE), "from the future");
        assert!(!s.verify_csrf(
            &Signer::new().csrf("root@pam", 0x6B00_0000),
            "root@pam",
            0x6B00_0000,
            CSRF_MAX_AGE
        ));
    }

    #[test]
    fn csrf_tokens_are_signed_as_pve_signs_them() {
        // The figures come from Perl's Digest::SHA, which PVE uses:
        // secret = hmac_sha256_base64(key file) (the file is the key, the data empty),
        // token sig = hmac_sha256_base64("T:user", secret).
        let key = csrf_key_of(b"KEYFILE\n");
        let sig = b64(hmac::sign(&key, b"6B000000:root@pam").as_ref());
        assert_eq!(sig, "ddhVHTusr2kJQpBMY3lenCEbYwuca7xtcL8zd4T+jP0");
    }

    #[test]
    fn token_header_forms() {
        let want = Some(("root@pam".to_string(), "rb".to_string(), "abc-def".to_string()));
        assert_eq!(parse_token_header("PVEAPIToken=root@pam!rb=abc-def"), want);
        assert_eq!(parse_token_header("PVEAPIToken=root@pam!rb abc-def"), want);
        assert_eq!(parse_token_header("PVEAPIToken root@pam!rb=abc-def"), want);
        assert_eq!(parse_token_header("Bearer x"), None);
    }

    #[test]
    fn acl_most_specific_wins() {
        let users = vec![UserSpec { userid: "a@pve".into(), password: None, tokens: vec![], enable: true }];
        let acls = vec![
            AclSpec {
                path: "/".into(),
                ugid: "a@pve".into(),
                role: Some("PVEAuditor".into()),
                privs: vec![],
                propagate: true,
            },
            AclSpec {
                path: "/vms/100".into(),
                ugid: "a@pve".into(),
                role: Some("NoAccess".into()),
                privs: vec![],
                propagate: true,
            },
        ];
        let acl = Acl { users: &users, acls: &acls };
        let id = Identity { userid: "a@pve".into(), tokenid: None, by_ticket: true };
        assert!(acl.has(&id, "/vms/101", "VM.Audit"));
        assert!(!acl.has(&id, "/vms/100", "VM.Audit"));
        assert!(!acl.has(&id, "/vms/101", "VM.Migrate"));
    }
}
