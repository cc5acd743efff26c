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
/// neither `.` nor `/`, so anything with one of them, or naming an existing file, is a file.
pub fn is_plan_file(arg: &str) -> bool {
    arg.contains('.') || arg.contains('/') || Path::new(arg).is_file()
}

/// sha256 of every input file: the settings file (`config`), and each file in the tenants,
/// blueprints and policies directories (`tenants/<file>`, ...). Hidden files and directories
/// are left out. Errors: a directory or file cannot be read (named).
pub fn input_digests(cli: &Cli) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    out.insert("config".to_string(), sha256_hex(&read(&cli.config)?));
    for (label, dir) in
        [("tenants", &cli.tenants_dir), ("blueprints", &cli.blueprints_dir), ("policies", &cli.policies_dir)]
    {
        let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
        let mut files: Vec<PathBuf> = Vec::new();
        for e in entries {
            let path = e.with_context(|| format!("cannot read directory {}", dir.display()))?.path();
            let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
            if path.is_file() && !hidden {
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
    let found = version.get("format_version").and_then(|v| v.as_u64());
    if found != Some(u64::from(FORMAT_VERSION)) {
        bail!(
            "{}: plan format version {} is not the one this tenantry reads ({FORMAT_VERSION}); make the plan again with `tenantry plan --out`",
            path.display(),
            found.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
        );
    }
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plan file saved by `tenantry plan --out`", path.display()))
}

/// Writes a saved plan to `path` (through a temporary file beside it and a rename, so a
/// reader never sees half a plan). Errors: the file cannot be written.
pub fn write(path: &Path, saved: &SavedPlan) -> Result<()> {
    let body = serde_json::to_string_pretty(saved)?;
    let tmp = path.with_extension("tmp-tenantry");
    std::fs::write(&tmp, body + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write plan file {}", path.display()))
}
