//! Saved plans on disk: `plan --out FILE` writes one, `apply FILE` reads it back. The checks
//! that decide whether it may still be carried out are pure and live in
//! [`crate::plan::saved`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{Cli, Command, EXIT_USAGE};
use crate::plan::saved::{SavedPlan, FORMAT_VERSION};
use crate::render::sha256_hex;

/// Whether an argument of `apply` names a plan file rather than a tenant: a tenant id has
/// neither `.` nor `/`, so anything with one of them is a file (`./tfplan` for a name without).
pub fn is_plan_file(arg: &str) -> bool {
    arg.contains('.') || arg.contains('/')
}

/// Refuses (with the exit code 64, said on stderr) a plan file name that `apply` would take for
/// a tenant id: `plan -out NAME` where NAME has no `.` or `/`, and `apply NAME` where NAME has
/// none either but is a file here (a saved plan applied as `apply acme` would otherwise plan
/// tenant `acme` afresh and apply that). `None`: the names are fine.
pub fn refuse_ambiguous_names(command: &Command) -> Option<u8> {
    match command {
        Command::Plan { out: Some(path), .. } if !is_plan_file(&path.to_string_lossy()) => {
            let name = path.display();
            eprintln!("error: plan file name `{name}` has no `.` or `/`, so `tenantry apply {name}` would take it for a tenant id: name it `{name}.plan` or `./{name}`");
            Some(EXIT_USAGE)
        }
        Command::Apply { tenants, .. } => {
            let file = tenants.iter().find(|t| !is_plan_file(t) && Path::new(t).is_file())?;
            eprintln!("error: `{file}` is a file here and would be taken for a tenant id: to apply the saved plan, write `tenantry apply ./{file}`; to apply tenant {file}, run from another directory");
            Some(EXIT_USAGE)
        }
        _ => None,
    }
}

/// Whether `command` needs the digests of the input files: `plan -out` and `apply FILE`.
pub fn wants_digests(command: &Command) -> bool {
    match command {
        Command::Plan { out, .. } => out.is_some(),
        Command::Apply { tenants, .. } => tenants.iter().any(|t| is_plan_file(t)),
        _ => false,
    }
}

/// sha256 of every input file, as the loaders read them: the settings file (`config`), the
/// tenant files (`tenants/*.toml`), the templates and their parameter declarations
/// (`blueprints/*.json`, `blueprints/*.toml`) and the policies (`policies/*.json`). Hidden files
/// and other files (an editor's `acme.toml~`, a `.bak`) are left out, as the loaders leave them.
/// Errors: a directory or file cannot be read (named).
pub fn input_digests(cli: &Cli) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    out.insert("config".to_string(), sha256_hex(&read(&cli.config)?));
    let dirs: [(&str, &Path, &[&str]); 3] = [
        ("tenants", &cli.tenants_dir, &["toml"]),
        ("blueprints", &cli.blueprints_dir, &["json", "toml"]),
        ("policies", &cli.policies_dir, &["json"]),
    ];
    for (label, dir, extensions) in dirs {
        let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for e in entries {
            let path = e.with_context(|| format!("cannot read directory {}", dir.display()))?.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
            let read = path.extension().and_then(|x| x.to_str()).is_some_and(|x| extensions.contains(&x));
            if path.is_file() && !hidden && read {
                files.push(path);
            }
        }
        for path in files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            out.insert(format!("{label}/{name}"), sha256_hex(&read(&path)?));
        }
    }
    Ok(out)
}

/// Reads a saved plan. Errors: the file cannot be read, is not a saved plan (the JSON error
/// with its line and column), or was written in another format version.
pub fn read(path: &Path) -> Result<SavedPlan> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read plan file {}", path.display()))?;
    let version: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plan file saved by `tenantry plan --out`", path.display()))?;
    if version.get("tenantry_version").is_none() {
        bail!("{}: not a plan file saved by `tenantry plan -out` (it has no `tenantry_version`)", path.display());
    }
    let found = version.get("format_version");
    if found.and_then(|v| v.as_u64()) != Some(u64::from(FORMAT_VERSION)) {
        bail!(
            "{}: plan format version {} is not the one this tenantry reads ({FORMAT_VERSION}); make the plan again with `tenantry plan --out`",
            path.display(),
            found.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
        );
    }
    let saved: SavedPlan = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plan file saved by `tenantry plan --out`", path.display()))?;
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = saved.plan.tenants.iter().find(|t| !seen.insert(&t.tenant)) {
        bail!(
            "{}: tenant {} is in the plan twice; `tenantry plan -out` never writes that",
            path.display(),
            twice.tenant
        );
    }
    Ok(saved)
}

/// Writes a saved plan to `path` (through a new temporary file beside it, created exclusively,
/// and a rename, so a reader never sees half a plan; the temporary file is removed if the rename
/// fails). Errors: the file cannot be written.
pub fn write(path: &Path, saved: &SavedPlan) -> Result<()> {
    use std::io::Write;
    let body = serde_json::to_string_pretty(saved)? + "\n";
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("plan");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("cannot write plan file {}", path.display()))?;
    if let Err(e) = file.write_all(body.as_bytes()) {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot write plan file {}: {e}", path.display());
    }
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write plan file {}: {e}", path.display())
    })
}
