//! `tenantry state init` and `tenantry state migrate`.

use anyhow::{bail, Result};

use super::StateCommand;
use crate::apply::Engine;
use crate::state::StateStore;

/// `tenantry state init` and `tenantry state migrate`.
pub(super) async fn cmd_state(engine: &Engine, action: &StateCommand) -> Result<u8> {
    let store = &engine.ctx.store;
    let home = &engine.ctx.settings.home_region;
    match action {
        StateCommand::Init => {
            engine.ctx.store.ensure_bucket(home).await?;
            engine.ctx.store.mark(&engine.ctx.management_account_id, home).await?;
            crate::out!("state location: s3://{} (home region {home}); accounts found that it does not record are recorded by the next `apply`", store.bucket());
            Ok(0)
        }
        StateCommand::Migrate { from } => {
            if from == store.bucket() {
                bail!("--from names the configured state bucket itself ({from})");
            }
            let source = StateStore::new(engine.ctx.clients.s3.clone(), from.clone());
            match source.location().await? {
                crate::state::Location::Marked(m) if &m.home_region != home => bail!(
                    "the state in s3://{from} belongs to home_region `{}`, where tenantry's stacks are; tenantry.toml says `{home}`. Set home_region = \"{}\" first",
                    m.home_region,
                    m.home_region
                ),
                crate::state::Location::New => bail!("s3://{from} holds no tenantry state (no marker, no tenant records)"),
                _ => {}
            }
            engine.ctx.store.ensure_bucket(home).await?;
            let (mut copied, mut same, mut conflicts) = (0, 0, Vec::new());
            for key in source.list_keys("").await? {
                // Leases belong to running processes; the marker is written anew below.
                if key.starts_with("leases/") || key == crate::state::MARKER_KEY {
                    continue;
                }
                let Some(body) = source.get_bytes(&key).await? else { continue };
                match store.get_bytes(&key).await? {
                    None => {
                        store.put_new(&key, body).await?;
                        copied += 1;
                    }
                    Some(existing) if existing == body => same += 1,
                    Some(_) => conflicts.push(key),
                }
            }
            crate::out!(
                "state: {copied} object(s) copied from s3://{from} to s3://{}, {same} already there",
                store.bucket()
            );
            if !conflicts.is_empty() {
                eprintln!(
                    "error: {} object(s) exist in both buckets with other content, left as they are: {}",
                    conflicts.len(),
                    conflicts.join(", ")
                );
                eprintln!("the destination was not marked as the state location; resolve them, then run `tenantry state migrate` again");
                return Ok(1);
            }
            engine.ctx.store.mark(&engine.ctx.management_account_id, home).await?;
            crate::out!("state location: s3://{} (home region {home})", store.bucket());
            Ok(0)
        }
    }
}
