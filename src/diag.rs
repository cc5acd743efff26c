//! Diagnostics for user-written files: an error that points at a file, line, column and field,
//! rendered like rustc/cargo (the offending line shown and underlined). Pure: no I/O here.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// One problem found in a user-written file (`tenants/*.toml`, `tenantry.toml`, a blueprint or
/// policy template).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in, as given on the command line or found in the directory.
    pub file: PathBuf,
    /// 1-based line number (0 when the problem concerns the whole file).
    pub line: usize,
    /// 1-based column number (0 when unknown).
    pub column: usize,
    /// The dotted field path, e.g. `production.email`; empty when the problem is not one field's.
    pub field: String,
    /// What is wrong and, where possible, what to do about it.
    pub message: String,
    /// The source line the problem is on, for display.
    #[serde(skip)]
    pub snippet: Option<String>,
    /// Width of the underline under `snippet`, in characters.
    #[serde(skip)]
    pub underline: usize,
}

impl Diagnostic {
    /// A diagnostic located at a byte span of `source` (the contents of `file`).
    pub fn at_span(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let mut d = Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: field.into(),
            message: message.into(),
            snippet: None,
            underline: 0,
        };
        if let Some(span) = span {
            let start = span.start.min(source.len());
            let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = source[start..].find('\n').map_or(source.len(), |i| start + i);
            d.line = source[..start].matches('\n').count() + 1;
            d.column = source[line_start..start].chars().count() + 1;
            d.snippet = Some(source[line_start..line_end].to_string());
            let end = span.end.min(line_end).max(start);
            d.underline = source[start..end].chars().count().max(1);
        }
        d
    }

    /// A diagnostic about the whole file (no position).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
            snippet: None,
            underline: 0,
        }
    }

    /// A diagnostic at a known 1-based line (e.g. from a template engine's error).
    pub fn at_line(file: &Path, line: usize, column: usize, message: impl Into<String>) -> Self {
        let mut d = Self::whole_file(file, message);
        d.line = line;
        d.column = column;
        d
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            writeln!(f, "error: {}", self.message)?;
        } else {
            writeln!(f, "error: field `{}`: {}", self.field, self.message)?;
        }
        match (self.line, self.column) {
            (0, _) => write!(f, "  --> {}", self.file.display())?,
            (l, 0) => write!(f, "  --> {}:{}", self.file.display(), l)?,
            (l, c) => write!(f, "  --> {}:{}:{}", self.file.display(), l, c)?,
        }
        if let Some(snippet) = &self.snippet {
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            write!(
                f,
                "\n{pad} |\n{num} | {snippet}\n{pad} | {}{}",
                " ".repeat(self.column.saturating_sub(1)),
                "^".repeat(self.underline)
            )?;
        }
        Ok(())
    }
}

/// Renders a list of diagnostics, one block each, separated by blank lines.
pub fn render_all(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n\n")
}

/// Byte span of the value at `path` (a dotted field path split in parts) in TOML `source`,
/// falling back to the nearest enclosing table's key when the field is absent.
pub fn span_of(source: &str, path: &[&str]) -> Option<Range<usize>> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(source).ok()?;
    let mut table: &DeTable<'_> = doc.get_ref();
    let mut best: Option<Range<usize>> = None;
    for (i, part) in path.iter().enumerate() {
        let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *part) else {
            return best;
        };
        best = Some(if i + 1 == path.len() { value.span() } else { key.span() });
        match value.get_ref() {
            DeValue::Table(t) => table = t,
            _ if i + 1 == path.len() => break,
            DeValue::Array(a) => {
                // path continues with an index into the array
                let idx: usize = path.get(i + 1)?.parse().ok()?;
                return a.get(idx).map(|v| v.span()).or(best);
            }
            _ => return best,
        }
    }
    best
}

/// The dotted path of the innermost field whose value contains byte `offset` of TOML `source`
/// (e.g. `production.allowed_regions`), if the text parses.
pub fn field_at(source: &str, offset: usize) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn walk(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (key, value) in table.iter() {
            let span = value.span();
            let key_span = key.span();
            if (span.start <= offset && offset < span.end.max(span.start + 1))
                || (key_span.start <= offset && offset < key_span.end)
            {
                path.push(key.get_ref().to_string());
                if let DeValue::Table(t) = value.get_ref() {
                    walk(t, offset, path);
                }
                return true;
            }
            if let DeValue::Table(t) = value.get_ref() {
                path.push(key.get_ref().to_string());
                if walk(t, offset, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let doc = DeTable::parse(source).ok()?;
    let mut path = Vec::new();
    walk(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}
