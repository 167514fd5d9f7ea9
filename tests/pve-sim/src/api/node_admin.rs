//! What PVE's node views read besides the node's status: the subscription and the APT
//! repositories (Summary; its UI shows an error dialog when either call fails) and the node's
//! config (Notes). Answered as an unsubscribed PVE node with the default repositories and no
//! notes does.

use serde_json::{json, Value};

use super::{ok, ApiResult, Ctx};
use crate::server::World;

/// PVE's shop link in every subscription answer.
const SHOP_URL: &str = "https://www.proxmox.com/en/proxmox-virtual-environment/pricing";

/// `GET /nodes/{node}/subscription` with no key set: status `notfound` for everyone (PVE's
/// permission is `user => 'all'`), the server id only with `Sys.Audit` on the node.
pub fn subscription(w: &World, cx: &Ctx, node: &str) -> ApiResult {
    let mut answer =
        json!({"status": "notfound", "message": "There is no subscription key", "url": SHOP_URL});
    if cx.has(w, &format!("/nodes/{node}"), "Sys.Audit") {
        answer["serverid"] = server_id(node).into();
    }
    ok(answer)
}

/// A stable 32-hex-digit server id per node (PVE derives it from the host's hardware).
fn server_id(node: &str) -> String {
    let h = node.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("{h:016X}{:016X}", h.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15)
}

/// `GET /nodes/{node}/apt/repositories`: Debian's and the no-subscription repository in deb822
/// files, as a fresh PVE install switched to no-subscription has them; `standard-repos` says
/// which of PVE's standard repositories are configured (the Summary's "Repository Status").
pub fn apt_repositories(w: &World, cx: &Ctx, node: &str) -> ApiResult {
    cx.require(w, &format!("/nodes/{node}"), "Sys.Audit")?;
    let suite = match w.cluster.version.major {
        7 => "bullseye",
        8 => "bookworm",
        _ => "trixie",
    };
    let debian = json!({
        "Types": ["deb"], "URIs": ["http://deb.debian.org/debian"],
        "Suites": [suite, format!("{suite}-updates")], "Components": ["main", "contrib"],
        "Enabled": true, "FileType": "sources",
    });
    let pve = json!({
        "Types": ["deb"], "URIs": ["http://download.proxmox.com/debian/pve"], "Suites": [suite],
        "Components": ["pve-no-subscription"], "Enabled": true, "FileType": "sources",
    });
    let file = |path: &str, repo: Value| json!({"path": path, "file-type": "sources", "repositories": [repo], "digest": digest_bytes(path)});
    ok(json!({
        "files": [file("/etc/apt/sources.list.d/debian.sources", debian),
                  file("/etc/apt/sources.list.d/proxmox.sources", pve)],
        "errors": [],
        "infos": [],
        "digest": "4f6b0a5d1c2e3f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
        "standard-repos": [
            {"handle": "enterprise", "name": "Enterprise"},
            {"handle": "no-subscription", "name": "No-Subscription", "status": true},
            {"handle": "test", "name": "Test"},
        ],
    }))
}

/// A file's digest as PVE sends it: the SHA-256's 32 bytes as numbers (stand-in bytes here).
fn digest_bytes(path: &str) -> Vec<u8> {
    (0..32u8).map(|i| path.bytes().fold(i.wrapping_mul(31), |h, b| h.wrapping_mul(33) ^ b)).collect()
}

/// `GET /nodes/{node}/config` (the Notes tab): the simulated nodes have no notes or other
/// settings, so only the digest (PVE's permission: `Sys.Audit` on `/`).
pub fn config(w: &World, cx: &Ctx, node: &str) -> ApiResult {
    cx.require(w, "/", "Sys.Audit")?;
    let digest: String = digest_bytes(node).iter().take(20).map(|b| format!("{b:02x}")).collect();
    ok(json!({ "digest": digest }))
}
