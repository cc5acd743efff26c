//! tenantry: gives every tenant its own production and digital-twin staging AWS accounts and keeps
//! them in their desired state. See ARCHITECTURE.md for the map of modules.

pub mod config;
pub mod desired;
pub mod diag;
pub mod output;
pub mod render;
pub mod tenant;
pub mod apply;
pub mod aws;
pub mod guard;
pub mod observe;
pub mod plan;
pub mod progress;
pub mod state;
pub mod cli;
pub mod faults;
pub mod params;
pub mod shutdown;
pub mod reconcile;
pub mod shard;
pub mod metrics;
pub mod promote;
