//! Loading and checking tenant files. Every problem in every file is collected, each pointing at
//! the file, line and field, so one `tenantry validate` run shows everything to fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Environment, Tenant, TenantSpec};
use crate::config::{field_of, valid_ou_path, valid_region, OrgSettings};
use crate::diag::span_of;
use crate::diag::Diagnostic;
use crate::render::{Kind, Renderer};

/// Longest account name AWS accepts, in characters.
const ACCOUNT_NAME_MAX: usize = 50;
/// Longest tenant id, in characters (keeps policy, stack and account names within AWS limits).
const TENANT_ID_MAX: usize = 32;
/// At most five SCPs may be attached to an account; `FullAWSAccess` takes one place.
const POLICIES_MAX: usize = 4;

/// The result of loading a tenants directory.
#[derive(Debug, Default)]
pub struct LoadedTenants {
    /// Tenants whose files parsed and passed every check, sorted by id.
    pub tenants: Vec<Tenant>,
    /// Every problem found, in file order.
    pub errors: Vec<Diagnostic>,
    /// The text of each tenant's file, by path (for diagnostics of later checks).
    pub sources: BTreeMap<PathBuf, String>,
}

/// Loads and checks every `*.toml` file of `dir` (hidden files, whose names start with `.`, are
/// skipped). Never touches AWS.
pub fn load(dir: &Path, settings: &OrgSettings, renderer: &Renderer) -> LoadedTenants {
    let mut out = LoadedTenants::default();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            // Editors' lock and backup files (`.#acme.toml`, `.acme.toml.swp`) are not tenants.
            .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
            .collect(),
        Err(e) => {
            out.errors.push(Diagnostic::whole_file(dir, format!("cannot read tenants directory: {e}")));
            return out;
        }
    };
    paths.sort();
    let mut seen = Seen::default();
    for path in paths {
        let (source, spec, unknown) = match parse(&path) {
            Ok(parsed) => parsed,
            Err(mut diagnostics) => {
                out.errors.append(&mut diagnostics);
                continue;
            }
        };
        let mut problems: Vec<(String, String)> = Vec::new();
        let mut err = |field: String, msg: String| problems.push((field, msg));
        for field in unknown {
            let msg = unknown_field_message(&field);
            err(field, msg);
        }
        check_spec(&spec, &path, settings, renderer, &mut err);
        check_workloads(&spec, renderer, &mut err);
        seen.check(&spec, &path, &mut err);
        if problems.is_empty() {
            out.tenants.push(Tenant { spec, path: path.clone() });
            out.sources.insert(path.clone(), source.clone());
        }
        for (field, msg) in problems {
            let parts: Vec<&str> = field.split('.').collect();
            out.errors.push(Diagnostic::at_span(&path, &source, span_of(&source, &parts), field, msg));
        }
    }
    out.tenants.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
    out
}

/// Reads and parses one tenant file: its text, the spec, and the fields it has that the spec
/// does not know. Errors: the file cannot be read or parsed (with every unknown field found).
fn parse(path: &Path) -> Result<(String, TenantSpec, Vec<String>), Vec<Diagnostic>> {
    let source =
        std::fs::read_to_string(path).map_err(|e| vec![Diagnostic::whole_file(path, format!("cannot read: {e}"))])?;
    let mut unknown: Vec<String> = Vec::new();
    let parsed = toml::de::Deserializer::parse(&source)
        .and_then(|de| serde_ignored::deserialize(de, |p| unknown.push(p.to_string())));
    match parsed {
        Ok(spec) => Ok((source, spec, unknown)),
        Err(e) => {
            let mut out: Vec<Diagnostic> = unknown
                .iter()
                .map(|field| {
                    let parts: Vec<&str> = field.split('.').collect();
                    Diagnostic::at_span(
                        path,
                        &source,
                        span_of(&source, &parts),
                        field.clone(),
                        unknown_field_message(field),
                    )
                })
                .collect();
            out.push(Diagnostic::at_span(path, &source, e.span(), field_of(&e, &source), e.message().trim()));
            Err(out)
        }
    }
}

/// What the files read so far claim, for the cross-file rules: tenant ids, root emails
/// (case-insensitively) and account names are each used once. Account names are matched when an
/// account creation's answer is lost, so they must be unique too.
#[derive(Default)]
struct Seen {
    /// id → first file.
    ids: BTreeMap<String, PathBuf>,
    /// lowercase email → (file, field).
    emails: BTreeMap<String, (PathBuf, String)>,
    /// account name → (file, field).
    names: BTreeMap<String, (PathBuf, String)>,
}

impl Seen {
    /// Reports what `spec` claims that an earlier file claimed, and remembers the rest.
    fn check(&mut self, spec: &TenantSpec, path: &Path, err: &mut impl FnMut(String, String)) {
        if let Some(first) = self.ids.get(&spec.id) {
            err("id".into(), format!("duplicate tenant id `{}`: also used by {}", spec.id, first.display()));
        } else {
            self.ids.insert(spec.id.clone(), path.to_path_buf());
        }
        for env in Environment::ALL {
            let field = format!("{env}.email");
            let key = spec.account(env).email.to_lowercase();
            if let Some((file, other)) = self.emails.get(&key) {
                err(
                    field.clone(),
                    format!(
                        "email `{}` is already used by {} (field `{other}`); every account needs its own root email (compared case-insensitively)",
                        spec.account(env).email,
                        file.display()
                    ),
                );
            } else {
                self.emails.insert(key, (path.to_path_buf(), field));
            }
            let name = spec.account_name(env);
            let field = spec.account_name_field(env);
            if let Some((file, other)) = self.names.get(&name) {
                err(
                    field.clone(),
                    format!(
                        "account name `{name}` is already used by {} (field `{other}`); every account tenantry creates needs its own name (set `{env}.account_name`)",
                        file.display()
                    ),
                );
            } else {
                self.names.insert(name, (path.to_path_buf(), field));
            }
        }
    }
}

/// Checks one tenant file's values on their own (no cross-file rules).
fn check_spec(
    spec: &TenantSpec,
    path: &Path,
    settings: &OrgSettings,
    renderer: &Renderer,
    err: &mut impl FnMut(String, String),
) {
    check_identity(spec, path, err);
    for env in Environment::ALL {
        check_account(spec, env, settings, err);
        check_policies(spec, env, renderer, err);
        check_blueprints(spec, env, renderer, err);
    }
}

/// The tenant id (its form, its parts, the file name) and name.
fn check_identity(spec: &TenantSpec, path: &Path, err: &mut impl FnMut(String, String)) {
    if !valid_tenant_id(&spec.id) {
        err(
            "id".into(),
            format!("`{}` is not a valid tenant id: use 1-{TENANT_ID_MAX} lowercase letters, digits and `-`, starting with a letter and not ending with `-`", spec.id),
        );
    } else if spec.id.split('-').skip(1).any(|seg| Environment::ALL.iter().any(|e| e.as_str() == seg)) {
        // `tenantry-<id>-<environment>-<file>` must say whose SCP it is: with a tenant `a` and a
        // tenant `a-staging`, `tenantry-a-staging-production-x` could be either's.
        err(
            "id".into(),
            format!("tenant id `{}` may not contain `-production` or `-staging` as a part: tenantry's SCP names (`tenantry-<id>-<environment>-<file>`) would be ambiguous", spec.id),
        );
    } else if path.file_stem().is_some_and(|s| s != spec.id.as_str()) {
        err(
            "id".into(),
            format!("tenant id `{}` must match the file name: rename the file to `{}.toml`", spec.id, spec.id),
        );
    }
    if spec.name.trim().is_empty() {
        err("name".into(), "must not be empty".into());
    }
}

/// One account's email, name, OU, regions and tags.
fn check_account(spec: &TenantSpec, env: Environment, settings: &OrgSettings, err: &mut impl FnMut(String, String)) {
    let a = spec.account(env);
    if !valid_email(&a.email) {
        err(
            format!("{env}.email"),
            format!("`{}` is not a valid email address (6-64 characters, one `@`, a domain with a dot)", a.email),
        );
    }
    let name = spec.account_name(env);
    let field = spec.account_name_field(env);
    if name.chars().count() > ACCOUNT_NAME_MAX {
        err(field, format!("account name `{name}` is {} characters; AWS allows at most {ACCOUNT_NAME_MAX} (set a shorter `{env}.account_name`)", name.chars().count()));
    } else if !name.chars().all(|c| (' '..='~').contains(&c)) {
        err(field, format!("account name `{name}` may only contain printable ASCII characters"));
    }
    if !valid_ou_path(&a.ou) {
        err(format!("{env}.ou"), format!("`{}` is not an OU path such as `Tenants/Production`", a.ou));
    } else if ou_paths_overlap(&a.ou, &settings.quarantine_ou) {
        err(
            format!("{env}.ou"),
            format!(
                "`{}` overlaps quarantine_ou `{}` (tenantry.toml): suspended tenants' accounts go there, so no tenant's OU may be it, inside it, or hold it",
                a.ou, settings.quarantine_ou
            ),
        );
    }
    if a.allowed_regions.is_empty() {
        err(format!("{env}.allowed_regions"), "list at least one region".into());
    }
    if !a.allowed_regions.is_empty() && !a.allowed_regions.contains(&settings.home_region) {
        err(
            format!("{env}.allowed_regions"),
            format!("must include the home region `{}` (tenantry.toml): the blueprint stacks and the agent pipeline run there", settings.home_region),
        );
    }
    for (i, r) in a.allowed_regions.iter().enumerate() {
        if !valid_region(r) {
            err(format!("{env}.allowed_regions.{i}"), format!("`{r}` is not an AWS region name such as `us-east-1`"));
        }
    }
    if a.tags.len() > 47 {
        err(format!("{env}.tags"), "at most 47 tags (AWS allows 50; tenantry sets 3)".into());
    }
    for (k, v) in &a.tags {
        let f = format!("{env}.tags.{k}");
        if k.starts_with("tenantry:") || k.to_lowercase().starts_with("aws:") {
            err(f, format!("tag key `{k}` is reserved (`tenantry:` and `aws:` prefixes)"));
        } else if !(1..=128).contains(&k.chars().count()) || v.chars().count() > 256 {
            err(f, "tag keys are 1-128 characters, values at most 256".into());
        } else if let Some(c) = k.chars().chain(v.chars()).find(|c| !tag_char(*c)) {
            err(f, format!("tag keys and values may hold letters, digits, spaces and `_ . : / = + - @` only, not {c:?} (Organizations' TagResource refuses it)"));
        }
    }
}

/// Whether Organizations accepts `c` in a tag key or value: `[\p{L}\p{Z}\p{N}_.:/=+\-@]`
/// (letters, separators such as the space but no control character, digits, and the listed
/// punctuation).
fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
}

/// The longest policy file name (without `.json`) whose SCP name fits Organizations' 128
/// characters: `tenantry-` + name + `-` + 16 hex digits.
pub const POLICY_FILE_NAME_MAX: usize = 128 - "tenantry-".len() - 1 - super::POLICY_DIGEST_DIGITS;

/// Whether a policy file name keeps its content-addressed SCP name unambiguous: no `production`
/// or `staging` part (the per-account SCP names of earlier versions have one), and no final
/// part of 16 hex digits (which would read as the digest).
pub fn valid_policy_file_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let digest_like = |p: &str| p.len() == super::POLICY_DIGEST_DIGITS && p.bytes().all(|b| b.is_ascii_hexdigit());
    let environment_part = parts.iter().any(|p| *p == "production" || *p == "staging");
    let digest_end = parts.len() > 1 && parts.last().is_some_and(|p| digest_like(p));
    !environment_part && !digest_end
}

/// Whether one OU path is the other or inside it (`a/b` and `a/b/c`; not `a/b` and `a/bc`).
fn ou_paths_overlap(a: &str, b: &str) -> bool {
    let inside = |inner: &str, outer: &str| inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/'));
    a == b || inside(a, b) || inside(b, a)
}

/// One account's SCPs: how many, known, not listed twice, names short enough.
fn check_policies(spec: &TenantSpec, env: Environment, renderer: &Renderer, err: &mut impl FnMut(String, String)) {
    let a = spec.account(env);
    if a.policies.len() > POLICIES_MAX {
        err(format!("{env}.policies"), format!("at most {POLICIES_MAX} policies: AWS attaches at most 5 SCPs to an account and FullAWSAccess takes one"));
    } else if spec.lifecycle == super::Lifecycle::Suspended && a.policies.len() > POLICIES_MAX - 1 {
        err(
            format!("{env}.policies"),
            format!("at most {} policies while lifecycle = \"suspended\": AWS attaches at most 5 SCPs to an account, FullAWSAccess takes one and the quarantine SCP another", POLICIES_MAX - 1),
        );
    }
    for (i, p) in a.policies.iter().enumerate() {
        if p == super::QUARANTINE_POLICY_SOURCE {
            err(
                format!("{env}.policies.{i}"),
                format!("`{p}` is reserved: it names the SCP tenantry attaches to a suspended tenant's accounts; rename policies/{p}.json"),
            );
        } else if !renderer.has(Kind::Policy, p) {
            err(
                format!("{env}.policies.{i}"),
                format!(
                    "unknown policy `{p}`: no file policies/{p}.json (known: {})",
                    renderer.names(Kind::Policy).join(", ")
                ),
            );
        } else if a.policies[..i].contains(p) {
            err(format!("{env}.policies.{i}"), format!("policy `{p}` is listed twice"));
        } else if !valid_policy_file_name(p) {
            err(
                format!("{env}.policies.{i}"),
                format!("policy file name `{p}` may not have `production` or `staging` as a `-`-separated part, nor end in `-` and 16 hex digits: its SCP's name, `tenantry-{p}-<16 hex digits>`, must not look like another SCP tenantry names"),
            );
        } else if p.chars().count() > POLICY_FILE_NAME_MAX {
            err(
                format!("{env}.policies.{i}"),
                format!("policy file name `{p}` is longer than {POLICY_FILE_NAME_MAX} characters: its SCP, `tenantry-{p}-<16 hex digits>`, would pass Organizations' 128-character limit on policy names"),
            );
        }
    }
}

/// One account's blueprints: the baseline present, each known and allowed in the environment,
/// and their parameters (known, valid, required ones given).
fn check_blueprints(spec: &TenantSpec, env: Environment, renderer: &Renderer, err: &mut impl FnMut(String, String)) {
    let a = spec.account(env);
    if renderer.has(Kind::Blueprint, "baseline") && !a.blueprints.contains_key("baseline") {
        err(
            format!("{env}.blueprints"),
            format!("every account gets the baseline: add a [{env}.blueprints.baseline] table"),
        );
    }
    for (name, given) in &a.blueprints {
        if let Some(specs) = renderer.params(name) {
            let field = format!("{env}.blueprints.{name}");
            check_parameters(name, specs, given, &field, err);
        }
    }
    for name in a.blueprints.keys() {
        if !renderer.has(Kind::Blueprint, name) {
            err(
                format!("{env}.blueprints.{name}"),
                format!(
                    "unknown blueprint `{name}`: no file blueprints/{name}.json (known: {})",
                    renderer.names(Kind::Blueprint).join(", ")
                ),
            );
        } else if name == "agent-pipeline" && env == Environment::Production {
            err(
                format!("{env}.blueprints.{name}"),
                "the agent pipeline runs in the staging account only: agents never deploy to production directly"
                    .into(),
            );
        }
    }
}

/// Checks the workloads and the promotion policy.
fn check_workloads(spec: &TenantSpec, renderer: &Renderer, err: &mut impl FnMut(String, String)) {
    for (name, w) in &spec.workloads {
        let f = format!("workloads.{name}");
        if !valid_tenant_id(name) {
            err(
                f.clone(),
                format!(
                    "`{name}` is not a valid workload name: lowercase letters, digits and `-`, starting with a letter"
                ),
            );
        }
        if !renderer.has(Kind::Blueprint, &w.blueprint) {
            err(
                format!("{f}.blueprint"),
                format!(
                    "unknown blueprint `{}`: no file blueprints/{}.json (known: {})",
                    w.blueprint,
                    w.blueprint,
                    renderer.names(Kind::Blueprint).join(", ")
                ),
            );
            continue;
        }
        if matches!(w.blueprint.as_str(), "baseline" | "agent-pipeline") {
            err(
                format!("{f}.blueprint"),
                format!("`{}` is deployed by `apply`; a workload uses its own blueprint", w.blueprint),
            );
        }
        if let Some(specs) = renderer.params(&w.blueprint) {
            let field = format!("{f}.parameters");
            check_parameters(&w.blueprint, specs, &w.parameters, &field, err);
        }
    }
    check_promotion(spec, err);
}

/// The promotion policy: the soak's duration, the required checks' names, the high-risk
/// resource types.
fn check_promotion(spec: &TenantSpec, err: &mut impl FnMut(String, String)) {
    let p = &spec.promotion;
    if let Some(soak) = &p.soak {
        if humantime::parse_duration(soak).is_err() {
            err("promotion.soak".into(), format!("`{soak}` is not a duration such as `30m` or `2h`"));
        } else if regex::Regex::new(r"\d\s*(M|months?|y|years?)\b").expect("valid regex").is_match(soak) {
            err(
                "promotion.soak".into(),
                format!("`{soak}`: months and years are not accepted (`M` is months; write `m` for minutes)"),
            );
        }
    }
    for (i, c) in p.required_checks.iter().enumerate() {
        if !valid_tenant_id(c) {
            err(
                format!("promotion.required_checks.{i}"),
                format!("`{c}` is not a check name: lowercase letters, digits and `-`"),
            );
        }
    }
    for (i, t) in p.high_risk_resource_types.iter().enumerate() {
        if !t.starts_with("AWS::") && !t.starts_with("Custom::") && t != "*" {
            err(
                format!("promotion.high_risk_resource_types.{i}"),
                format!("`{t}` is not a resource type such as `AWS::RDS::DBInstance` or `AWS::RDS::*`"),
            );
        }
    }
}

/// The parameters `given` to `blueprint` against its declarations `specs`: each one known
/// (reported at `<field>.<key>`) with a valid value, and each required one given (reported at
/// `field`).
fn check_parameters(
    blueprint: &str,
    specs: &crate::params::ParamSpecs,
    given: &toml::Table,
    field: &str,
    err: &mut impl FnMut(String, String),
) {
    for (key, value) in given {
        match specs.get(key) {
            None => err(
                format!("{field}.{key}"),
                format!(
                    "blueprint `{blueprint}` has no parameter `{key}` (it takes: {})",
                    specs.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(spec) => {
                if let Err(why) = crate::params::check_value(spec, value) {
                    err(format!("{field}.{key}"), why);
                }
            }
        }
    }
    for (key, spec) in specs {
        if spec.default.is_none() && !given.contains_key(key) {
            err(field.to_string(), format!("missing parameter `{key}`: {}", spec.description));
        }
    }
}

/// "unknown field" with the known fields at that level and the closest one, if any is close.
fn unknown_field_message(path: &str) -> String {
    const TOP: &[&str] = &["id", "name", "drift", "lifecycle", "production", "staging", "workloads", "promotion"];
    const ACCOUNT: &[&str] = &["email", "account_name", "ou", "allowed_regions", "tags", "policies", "blueprints"];
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    const PROMOTION: &[&str] = &["required_checks", "soak", "approval", "high_risk_resource_types"];
    const WORKLOAD: &[&str] = &["blueprint", "parameters", "production", "staging"];
    let known = if parent.is_empty() {
        TOP
    } else if parent == "promotion" {
        PROMOTION
    } else if parent.starts_with("workloads.") && parent.matches('.').count() == 1 {
        WORKLOAD
    } else {
        ACCOUNT
    };
    let close = known.iter().min_by_key(|k| edit_distance(k, key)).filter(|k| edit_distance(k, key) <= 2);
    let mut msg = format!("unknown field `{key}`; known fields here: {}", known.join(", "));
    if let Some(c) = close {
        msg.push_str(&format!(" — did you mean `{c}`?"));
    }
    msg
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Whether `s` is a tenant id slug.
pub fn valid_tenant_id(s: &str) -> bool {
    (1..=TENANT_ID_MAX).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A pragmatic email check matching what `CreateAccount` accepts: 6-64 characters, one `@`,
/// a non-empty local part and a dotted domain, no whitespace.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    (6..=64).contains(&s.len())
        && !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::ou_paths_overlap;

    #[test]
    fn ou_paths_overlap_when_one_is_the_other_or_inside_it() {
        assert!(ou_paths_overlap("Quarantine", "Quarantine"));
        assert!(ou_paths_overlap("Tenants/Production", "Tenants"));
        assert!(ou_paths_overlap("Tenants", "Tenants/Production"));
        assert!(!ou_paths_overlap("Tenants/Prod", "Tenants/Production"));
        assert!(!ou_paths_overlap("Tenants/Production", "Quarantine"));
        assert!(!ou_paths_overlap("Quarantine2", "Quarantine"));
    }
}
