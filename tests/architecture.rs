//! The layering ARCHITECTURE.md promises, checked against the code: its code map lists the
//! modules from the bottom up, and each module may use only modules listed before it (so there
//! is no import cycle). Every module of `src/` must be in the map. Comments and `#[cfg(test)]`
//! code are not imports; macros (`crate::out!`) are not modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The modules of the code map, bottom first: the backticked names (`x.rs`, `x/`) before the
/// ` — ` of each bullet.
fn code_map_order(architecture: &str) -> Vec<String> {
    let start = architecture.find("## Code map").expect("a code map section");
    let section = &architecture[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut bullets: Vec<String> = Vec::new();
    for line in section.lines() {
        if let Some(b) = line.strip_prefix("- ") {
            bullets.push(b.to_string());
        } else if line.starts_with("  ") {
            if let Some(last) = bullets.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        }
    }
    let mut order = Vec::new();
    for b in bullets {
        let head = b.split(" — ").next().unwrap_or_default();
        for part in head.split('`').skip(1).step_by(2) {
            let name = part.trim_end_matches(".rs").trim_end_matches('/');
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                order.push(name.to_string());
            }
        }
    }
    order
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::<module>` paths used by the non-test, non-comment code of `text`.
fn uses(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() && !rest[name.len()..].starts_with('!') {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn every_module_uses_only_modules_below_it_in_the_code_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let order = code_map_order(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let rank: BTreeMap<&str, usize> = order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root.join("src")).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" || rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(&mine) = rank.get(top.as_str()) else {
            problems.push(format!("src/{} is not in ARCHITECTURE.md's code map", rel.display()));
            continue;
        };
        for used in uses(&std::fs::read_to_string(f).unwrap()) {
            match rank.get(used.as_str()) {
                Some(&theirs) if theirs > mine => {
                    problems.push(format!("src/{} uses crate::{used}, listed above {top}", rel.display()))
                }
                None => problems.push(format!("src/{} uses crate::{used}, not in the code map", rel.display())),
                _ => {}
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "code map order {order:?}:\n{}", problems.join("\n"));
}

#[test]
fn the_check_finds_an_upward_use() {
    let map = "## Code map\n\n- `low.rs` — below.\n- `high/` — above,\n  continued.\n\n## Next\n";
    assert_eq!(code_map_order(map), ["low", "high"]);
    assert_eq!(uses("use crate::high::X;\n// crate::doc\ncrate::out!(\"x\");\n#[cfg(test)]\nuse crate::t;"), ["high"]);
}
