//! Saved plans on disk: `plan --out FILE` writes one, `apply FILE` reads it back. The checks
//! that decide whether it may still be carried out are pure and live in
//! [`crate::plan::saved`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::Cli;
use crate::plan::saved::{SavedPlan, FORMAT_VERSION};
use crate::render::sha256_hex;

/// Whether an argument of `apply` names a plan file rather than a tenant: a tenant id has
/// neither `.` nor `/`, so anything with one of them is a file (`./tfplan` for a name without).
pub fn is_plan_file(arg: &str) -> bool {
    arg.contains('.') || arg.contains('/')
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
    let found = version.get("format_version");
    if found.and_then(|v| v.as_u64()) != Some(u64::from(FORMAT_VERSION)) {
        bail!(
            "{}: plan format version {} is not the one this tenantry reads ({FORMAT_VERSION}); make the plan again with `tenantry plan --out`",
            path.display(),
            found.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
        );
    }
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plan file saved by `tenantry plan --out`", path.display()))
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
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(body.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write plan file {}: {e}", path.display())
    })
}
