//! pve-sim's integration tests, one binary (one link) for all: each module was once its own
//! `tests/*.rs` target. A new test file goes here as a module (`mod x;`), never beside this
//! folder: `autotests = false` would leave it unbuilt (`cargo xtask self-contained` checks).

mod common;

mod bulk_ha;
mod dynamics;
mod generate;
mod migration;
mod modes;
mod proxlb;
mod pve_ui;
mod schema_walk;
mod thin;
