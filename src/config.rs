//! Organization-wide settings from `tenantry.toml`. Pure: parsing and defaults only, no AWS calls.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;

/// Contents of `tenantry.toml`. Every field has a default, so an empty or missing file is valid.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OrgSettings {
    /// Role assumed in every member account (created by Organizations `CreateAccount`).
    pub access_role: String,
    /// Name of the role tenantry runs as in the management account; blueprints grant it audit access.
    pub management_role: String,
    /// Region for the state bucket and the blueprint stacks.
    pub home_region: String,
    /// State bucket name. Default: `tenantry-state-<management account id>-<home region>`.
    pub state_bucket: Option<String>,
    /// OU path under the organization root that every tenant OU path hangs from; empty = the root.
    pub ou_root: String,
    /// OU path (under `ou_root`) where a suspended tenant's accounts are moved; created if missing.
    pub quarantine_ou: String,
    /// How many tenants are worked on at once.
    pub concurrency: usize,
    /// How many tenants are observed at once where nothing is changed: `plan`, `status`, and
    /// the plan `apply` shows before it takes any lease. Each tenant's reads in its member
    /// accounts (STS, CloudFormation) count against those accounts' own request rates; its
    /// Organizations reads (two per account) against the management account's.
    pub read_concurrency: usize,
    /// How many `CreateAccount` requests may be in flight at once (an AWS quota applies too).
    pub account_creation_concurrency: usize,
    /// Seconds a per-tenant lease is held before another process may take it over.
    pub lease_ttl_seconds: u64,
    /// Seconds to wait for a tenant's lease held by another process before giving up (longer
    /// than `lease_ttl_seconds`, so that an abandoned lease is outwaited).
    pub lease_wait_seconds: u64,
    /// Seconds to wait for `CreateAccount` to finish (`DescribeCreateAccountStatus` polling).
    pub create_account_timeout_seconds: u64,
    /// Seconds to keep retrying `AssumeRole` into a new account whose role is not yet assumable.
    pub assume_role_timeout_seconds: u64,
    /// Seconds to wait for one CloudFormation stack operation.
    pub stack_timeout_seconds: u64,
    /// Seconds before the second look (`DescribeStacks`, `DescribeChangeSet`) at a running stack
    /// operation; each pause then doubles, with jitter, up to `stack_poll_max_delay_seconds`.
    /// Unset: 30 s growing to 120 s (the SDK's CloudFormation waiters) against AWS; 0.25 s
    /// growing to 2 s when an endpoint override (`AWS_ENDPOINT_URL`, or
    /// `AWS_ENDPOINT_URL_CLOUDFORMATION`) names a local host (loopback, `localhost`, `localstack`).
    pub stack_poll_min_delay_seconds: Option<f64>,
    /// The longest pause between two looks at a running stack operation, in seconds; see
    /// `stack_poll_min_delay_seconds`.
    pub stack_poll_max_delay_seconds: Option<f64>,
    /// Seconds one attempt of an AWS request may take before the SDK abandons it and retries
    /// (its operation attempt timeout; connecting has its own 10 s).
    pub request_timeout_seconds: u64,
}

impl Default for OrgSettings {
    fn default() -> Self {
        OrgSettings {
            access_role: "OrganizationAccountAccessRole".into(),
            management_role: "tenantry".into(),
            home_region: "us-east-1".into(),
            state_bucket: None,
            ou_root: String::new(),
            quarantine_ou: "Quarantine".into(),
            concurrency: 16,
            read_concurrency: 16,
            account_creation_concurrency: 5,
            lease_ttl_seconds: 900,
            lease_wait_seconds: 1200,
            create_account_timeout_seconds: 1800,
            assume_role_timeout_seconds: 300,
            stack_timeout_seconds: 3600,
            stack_poll_min_delay_seconds: None,
            stack_poll_max_delay_seconds: None,
            request_timeout_seconds: 60,
        }
    }
}

impl OrgSettings {
    /// Reads `path`; a missing file gives the defaults. Errors name the file, line and field.
    pub fn load(path: &Path) -> Result<OrgSettings, Vec<Diagnostic>> {
        let source = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OrgSettings::default()),
            Err(e) => return Err(vec![Diagnostic::whole_file(path, format!("cannot read: {e}"))]),
        };
        Self::parse(path, &source)
    }

    /// Parses the text of `tenantry.toml` and checks its values.
    pub fn parse(path: &Path, source: &str) -> Result<OrgSettings, Vec<Diagnostic>> {
        let settings: OrgSettings = toml::from_str(source)
            .map_err(|e| vec![Diagnostic::at_span(path, source, e.span(), field_of(&e, source), e.message().trim())])?;
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, msg: &str| {
            if !ok {
                let span = crate::diag::span_of(source, &[field]);
                errors.push(Diagnostic::at_span(path, source, span, field, msg));
            }
        };
        check(
            valid_role_name(&settings.access_role),
            "access_role",
            "not a valid IAM role name (1-64 of [A-Za-z0-9+=,.@_-])",
        );
        check(
            valid_role_name(&settings.management_role),
            "management_role",
            "not a valid IAM role name (1-64 of [A-Za-z0-9+=,.@_-])",
        );
        check(valid_region(&settings.home_region), "home_region", "not an AWS region name such as `us-east-1`");
        check(settings.concurrency >= 1, "concurrency", "must be at least 1");
        check(settings.read_concurrency >= 1, "read_concurrency", "must be at least 1");
        check(settings.account_creation_concurrency >= 1, "account_creation_concurrency", "must be at least 1");
        check(settings.request_timeout_seconds >= 1, "request_timeout_seconds", "must be at least 1 second");
        check(settings.lease_ttl_seconds >= 30, "lease_ttl_seconds", "must be at least 30 seconds");
        for (field, value) in [
            ("stack_poll_min_delay_seconds", settings.stack_poll_min_delay_seconds),
            ("stack_poll_max_delay_seconds", settings.stack_poll_max_delay_seconds),
        ] {
            check(
                value.is_none_or(|v| (0.01..=3600.0).contains(&v)),
                field,
                "must be a number of seconds from 0.01 to 3600",
            );
        }
        if let (Some(min), Some(max)) = (settings.stack_poll_min_delay_seconds, settings.stack_poll_max_delay_seconds) {
            check(min <= max, "stack_poll_max_delay_seconds", "must not be less than stack_poll_min_delay_seconds");
        }
        if let Some(b) = &settings.state_bucket {
            check(valid_bucket_name(b), "state_bucket", "not a valid S3 bucket name (3-63 of [a-z0-9.-])");
        }
        check(
            valid_ou_path(&settings.quarantine_ou),
            "quarantine_ou",
            "an OU path such as `Quarantine` or `Suspended/Tenants` (no leading or trailing `/`)",
        );
        check(
            settings.ou_root.is_empty() || valid_ou_path(&settings.ou_root),
            "ou_root",
            "an OU path such as `Workloads` or `Workloads/Tenants` (no leading or trailing `/`)",
        );
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(errors)
        }
    }

    /// The state bucket's name for a management account.
    pub fn state_bucket_for(&self, management_account_id: &str) -> String {
        self.state_bucket
            .clone()
            .unwrap_or_else(|| format!("tenantry-state-{management_account_id}-{}", self.home_region))
    }

    /// The full OU path of a tenant's OU path, with `ou_root` in front.
    pub fn full_ou_path(&self, tenant_ou: &str) -> String {
        if self.ou_root.is_empty() {
            tenant_ou.to_string()
        } else {
            format!("{}/{}", self.ou_root, tenant_ou)
        }
    }
}

/// The field a `toml` error is about: named in the message ("unknown field `x`", "missing field
/// `x`"), else the field whose value the error's span points into (type errors, bad variants).
pub(crate) fn field_of(e: &toml::de::Error, source: &str) -> String {
    let msg = e.message();
    let at = e.span().and_then(|s| crate::diag::field_at(source, s.start)).unwrap_or_default();
    match msg.split('`').nth(1) {
        Some(f) if msg.starts_with("missing field") && !at.is_empty() => format!("{at}.{f}"),
        Some(f) if msg.contains("field") => {
            // an unknown field: its own key is at the span
            if at.ends_with(f) {
                at
            } else {
                f.to_string()
            }
        }
        _ => at,
    }
}

fn valid_role_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

fn valid_bucket_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// Default location of `tenantry.toml`: next to the tenants directory.
pub fn default_settings_path(tenants_dir: &Path) -> PathBuf {
    tenants_dir.parent().map_or_else(|| PathBuf::from("tenantry.toml"), |p| p.join("tenantry.toml"))
}

/// Whether `s` is a region name such as `us-east-1` or `us-gov-west-1`.
pub fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().unwrap().chars().all(|c| c.is_ascii_digit())
}

/// Whether `s` is an OU path: `/`-separated names of 1-128 characters, no empty segment.
pub fn valid_ou_path(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|seg| {
            (1..=128).contains(&seg.chars().count()) && seg.trim() == seg && !seg.chars().any(char::is_control)
        })
}

#[cfg(test)]
mod tests {
    use super::OrgSettings;
    use std::path::Path;

    #[test]
    fn stack_poll_delays_are_checked() {
        let parse = |text: &str| OrgSettings::parse(Path::new("tenantry.toml"), text);
        let ok = parse("stack_poll_min_delay_seconds = 0.25\nstack_poll_max_delay_seconds = 2\n").unwrap();
        assert_eq!((ok.stack_poll_min_delay_seconds, ok.stack_poll_max_delay_seconds), (Some(0.25), Some(2.0)));
        for (text, field) in [
            ("stack_poll_min_delay_seconds = 0\n", "stack_poll_min_delay_seconds"),
            ("stack_poll_max_delay_seconds = 7200\n", "stack_poll_max_delay_seconds"),
            ("stack_poll_min_delay_seconds = 10\nstack_poll_max_delay_seconds = 5\n", "stack_poll_max_delay_seconds"),
        ] {
            let errors = parse(text).unwrap_err();
            assert!(errors.iter().any(|e| e.to_string().contains(field)), "{text}: {errors:?}");
        }
    }
}
