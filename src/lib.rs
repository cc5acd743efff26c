//! tenantry: gives every tenant its own production and digital-twin staging AWS accounts and keeps
//! them in their desired state. See ARCHITECTURE.md for the map of modules.

pub mod apply;
pub mod aws;
pub mod cli;
pub mod config;
pub mod desired;
pub mod diag;
pub mod faults;
pub mod guard;
pub mod inputs;
pub mod metrics;
pub mod observe;
pub mod output;
pub mod params;
pub mod plan;
pub mod poll;
pub mod progress;
pub mod promote;
pub mod reconcile;
pub mod render;
pub mod shard;
pub mod shutdown;
pub mod state;
pub mod tenant;
