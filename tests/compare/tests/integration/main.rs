//! The comparison's integration tests, one binary: the quick side-by-side run and ProxLB's JSON
//! shape against the real ProxLB. A new test file goes here as a module.

mod proxlb_shape;
mod quick;
