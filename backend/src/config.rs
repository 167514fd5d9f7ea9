//! ProxLB's `proxlb.yaml`, read unchanged, plus our own `rebalancer:` section.
//!
//! - [`types`]: one typed struct per section, ProxLB's defaults in `Default`.
//! - [`load`]: text → [`LoadedConfig`]: YAML and type errors with file:line:column, unknown keys
//!   as warnings ("did you mean …?"), impossible values rejected with the fix.
//! - [`map`]: the config as the rest of the service wants it: PVE endpoints (failover order),
//!   `shared::PlanRequest`, executor tunables.
//!
//! Invariant: secrets (`pass`, `token_secret`) live in [`Secret`], whose `Debug` prints `***`.

mod locate;
pub(crate) mod schema;
mod validate;

pub mod load;
pub mod map;
pub mod notify;
pub mod types;

pub use load::{load_file, parse_str, ConfigError, LoadedConfig};
pub use map::{parse_host, Endpoint};
pub use types::*;

/// Where ProxLB looks by default, and where our Debian package ships the file.
pub const PROXLB_DEFAULT_PATH: &str = "/etc/proxlb/proxlb.yaml";
pub const DEFAULT_PATH: &str = "/etc/pve-rebalancer/proxlb.yaml";
