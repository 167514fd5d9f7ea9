//! Client for the Proxmox VE HTTP API (`/api2/json`).

mod client;
pub mod wire;

pub use client::{escape_cookie, Connection, Credentials, PveClient, PveError, PveOptions, UserCredential};
