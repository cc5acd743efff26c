//! `tenantry status`: each tenant's accounts, OU, stack versions and statuses, read-only.

use anyhow::Result;
use serde::Serialize;

use super::plan::observe_each;
use super::Output;
use crate::apply::Engine;
use crate::desired::{DesiredAccount, DesiredTenant};
use crate::observe::{AccountObservation, ObservedAccount, OrgOverview};
use crate::tenant::Environment;

/// One account's line.
#[derive(Serialize)]
struct StatusRow {
    tenant: String,
    environment: Environment,
    account_id: Option<String>,
    account_status: String,
    ou: String,
    stacks: Vec<StackStatus>,
    note: Option<String>,
}

/// One stack of an account's line.
#[derive(Serialize)]
struct StackStatus {
    stack: String,
    version: Option<String>,
    desired_version: String,
    status: String,
}

impl StatusRow {
    /// A row without an account to show: `status` and why.
    fn without_account(tenant: &str, env: Environment, status: &str, account_id: Option<String>, note: String) -> Self {
        StatusRow {
            tenant: tenant.to_string(),
            environment: env,
            account_id,
            account_status: status.into(),
            ou: String::new(),
            stacks: vec![],
            note: Some(note),
        }
    }
}

/// Observes every tenant (read-only) and prints one row per account. Exit 1 when a tenant could
/// not be observed or an account is refused, else 0.
pub async fn run(
    engine: &Engine,
    overview: Option<&OrgOverview>,
    tenants: &[DesiredTenant],
    output: Output,
) -> Result<u8> {
    let mut rows = Vec::new();
    let mut failed = false;
    for (id, observed) in observe_each(engine, overview, tenants, |_, o| o).await {
        let d = tenants.iter().find(|t| t.id == id).expect("observed tenants are desired");
        let observed = match observed {
            Ok(o) => o,
            Err(e) => {
                failed = true;
                for a in &d.accounts {
                    rows.push(StatusRow::without_account(&id, a.environment, "ERROR", None, format!("{e:#}")));
                }
                continue;
            }
        };
        for want in &d.accounts {
            let env = want.environment;
            rows.push(match observed.accounts.get(&env) {
                Some(AccountObservation::Found(f)) => found_row(&id, want, f),
                Some(AccountObservation::Creating { request_id }) => StatusRow::without_account(
                    &id,
                    env,
                    "CREATING",
                    None,
                    format!("CreateAccount request {request_id}"),
                ),
                Some(AccountObservation::Refused { reason, account_id }) => {
                    failed = true;
                    StatusRow::without_account(&id, env, "REFUSED", account_id.clone(), reason.clone())
                }
                Some(AccountObservation::Missing) | None => StatusRow::without_account(
                    &id,
                    env,
                    "MISSING",
                    None,
                    "not created yet: run `tenantry apply`".into(),
                ),
            });
        }
    }
    match output {
        Output::Json => crate::out!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Text => print(&rows),
    }
    Ok(if failed { 1 } else { 0 })
}

/// The row of an account that was found: its OU (and the one wanted, when it is elsewhere) and
/// each stack the file wants with the version it runs.
fn found_row(tenant: &str, want: &DesiredAccount, f: &ObservedAccount) -> StatusRow {
    StatusRow {
        tenant: tenant.to_string(),
        environment: want.environment,
        account_id: Some(f.account.id.clone()),
        account_status: f.account.status.to_string(),
        ou: if f.desired_ou_id.as_deref() == Some(f.parent_id.as_str()) {
            want.ou_path.clone()
        } else {
            format!("{} (wanted {})", f.parent_id, want.ou_path)
        },
        stacks: want
            .stacks
            .iter()
            .map(|s| {
                let o = f.stacks.get(&s.stack_name);
                StackStatus {
                    stack: s.stack_name.clone(),
                    version: o.and_then(|o| o.version.clone()),
                    desired_version: s.version.clone(),
                    status: o.map_or("MISSING".into(), |o| o.status.to_string()),
                }
            })
            .collect(),
        note: None,
    }
}

/// The rows as a table.
fn print(rows: &[StatusRow]) {
    crate::out!("{:<20} {:<11} {:<13} {:<9} {:<24} STACKS", "TENANT", "ENV", "ACCOUNT", "STATUS", "OU");
    for r in rows {
        let stacks = r
            .stacks
            .iter()
            .map(|s| {
                let v = s.version.as_deref().map_or("-", |v| &v[..v.len().min(12)]);
                let mark = if s.version.as_deref() == Some(s.desired_version.as_str()) { "" } else { " (outdated)" };
                format!("{}@{v} {}{mark}", s.stack, s.status)
            })
            .collect::<Vec<_>>()
            .join(", ");
        crate::out!(
            "{:<20} {:<11} {:<13} {:<9} {:<24} {}{}",
            r.tenant,
            r.environment.as_str(),
            r.account_id.as_deref().unwrap_or("-"),
            r.account_status,
            r.ou,
            stacks,
            r.note.as_deref().map(|n| format!(" — {n}")).unwrap_or_default()
        );
    }
}
