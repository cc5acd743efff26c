//! Renders blueprints (CloudFormation templates) and service control policies with handlebars in
//! strict mode. Pure apart from reading the template files once at load time.
//!
//! Escaping is JSON's, so tenant values can never change a document's structure: `{{path}}` writes
//! the value JSON-string-escaped (for use inside a quoted JSON string) and `{{json path}}` writes a
//! complete JSON value. An undefined variable is an error, never an empty string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::{Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError, RenderErrorReason};
use sha2::{Digest, Sha256};

use crate::diag::Diagnostic;
use crate::params::ParamSpecs;

/// AWS limit on a service control policy document, in characters.
pub const SCP_MAX_CHARS: usize = 5_120;
/// AWS limit on a template passed inline to CloudFormation (`TemplateBody`), in bytes. Larger
/// templates are uploaded to S3 and passed by `TemplateURL`.
pub const TEMPLATE_BODY_MAX_BYTES: usize = 51_200;
/// AWS limit on a template passed by `TemplateURL` (from S3), in bytes.
pub const TEMPLATE_URL_MAX_BYTES: usize = 1_048_576;

/// Which kind of document a template produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A CloudFormation template in `blueprints/`.
    Blueprint,
    /// A service control policy in `policies/`.
    Policy,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Blueprint => "blueprint",
            Kind::Policy => "policy",
        }
    }
}

/// The loaded blueprint and policy templates.
pub struct Renderer {
    hb: Handlebars<'static>,
    files: BTreeMap<(String, String), PathBuf>,
    params: BTreeMap<String, ParamSpecs>,
}

/// A rendered document and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The document text exactly as it is sent to AWS.
    pub body: String,
    /// Lowercase hex sha256 of `body`: the document's version.
    pub digest: String,
}

/// Why a document could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderFailure {
    /// No template with that name exists.
    #[error("no {kind} named `{name}` (known: {known})")]
    Unknown { kind: &'static str, name: String, known: String },
    /// The template engine failed, e.g. an undefined variable.
    #[error("{file}{at}: {reason}", at = line.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Template { file: String, line: Option<(usize, usize)>, reason: String },
    /// The rendered text is not valid JSON.
    #[error("{file}: rendered text is not valid JSON: {reason}")]
    NotJson { file: String, reason: String },
    /// The rendered document is larger than AWS accepts.
    #[error("{file}: rendered {what} is {size} {unit}, over the AWS limit of {limit}")]
    TooLarge { file: String, what: &'static str, size: usize, unit: &'static str, limit: usize },
}

impl Renderer {
    /// Loads every `*.json` file of `blueprints_dir` and `policies_dir` as a template named after
    /// its file stem. Errors name the file and line of any template syntax error.
    pub fn load(blueprints_dir: &Path, policies_dir: &Path) -> Result<Renderer, Vec<Diagnostic>> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.set_prevent_indent(true);
        hb.register_escape_fn(json_escape_inner);
        hb.register_helper("json", Box::new(json_helper));
        let mut files = BTreeMap::new();
        let mut params = BTreeMap::new();
        let mut errors = Vec::new();
        for (kind, dir) in [(Kind::Blueprint, blueprints_dir), (Kind::Policy, policies_dir)] {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(Diagnostic::whole_file(dir, format!("cannot read directory: {e}")));
                    continue;
                }
            };
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                // Hidden files (an editor's `.baseline.json.swp` aside, a `.draft.json`) are not
                // templates, as they are not inputs of a saved plan.
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.')))
                .collect();
            paths.sort();
            for path in paths {
                let name = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(Diagnostic::whole_file(&path, format!("cannot read: {e}")));
                        continue;
                    }
                };
                if let Err(e) = hb.register_template_string(&format!("{}/{name}", kind.prefix()), &text) {
                    let (line, col) = e.pos().unwrap_or((0, 0));
                    errors.push(Diagnostic::at_line(&path, line, col, format!("template syntax: {}", e.reason())));
                    continue;
                }
                if kind == Kind::Blueprint {
                    let decl = path.with_extension("toml");
                    if let Ok(src) = std::fs::read_to_string(&decl) {
                        match toml::from_str::<ParamSpecs>(&src) {
                            Ok(specs) => {
                                params.insert(name.clone(), specs);
                            }
                            Err(e) => errors.push(Diagnostic::at_span(
                                &decl,
                                &src,
                                e.span(),
                                crate::config::field_of(&e, &src),
                                e.message().trim(),
                            )),
                        }
                    }
                }
                files.insert((kind.prefix().to_string(), name), path);
            }
        }
        if errors.is_empty() {
            Ok(Renderer { hb, files, params })
        } else {
            Err(errors)
        }
    }

    /// Names of the templates of one kind.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        self.files.keys().filter(|(k, _)| k == kind.prefix()).map(|(_, n)| n.clone()).collect()
    }

    /// The parameter declarations of a blueprint (`blueprints/<name>.toml`), if it has any.
    pub fn params(&self, blueprint: &str) -> Option<&ParamSpecs> {
        self.params.get(blueprint)
    }

    /// Whether a template of that kind and name exists.
    pub fn has(&self, kind: Kind, name: &str) -> bool {
        self.files.contains_key(&(kind.prefix().to_string(), name.to_string()))
    }

    /// The file a template was loaded from.
    pub fn path(&self, kind: Kind, name: &str) -> Option<&Path> {
        self.files.get(&(kind.prefix().to_string(), name.to_string())).map(PathBuf::as_path)
    }

    /// Renders one template with `context`, checks the result is JSON within AWS's size limit
    /// (5,120 characters for a policy; 1,048,576 bytes for a template, which goes through S3
    /// over 51,200), and returns it with its sha256. Policies are minified (whitespace does not count against
    /// the SCP limit); templates are kept exactly as rendered.
    pub fn render(&self, kind: Kind, name: &str, context: &serde_json::Value) -> Result<Rendered, RenderFailure> {
        let key = (kind.prefix().to_string(), name.to_string());
        let Some(path) = self.files.get(&key) else {
            return Err(RenderFailure::Unknown {
                kind: kind.prefix(),
                name: name.into(),
                known: self.names(kind).join(", "),
            });
        };
        let file = path.display().to_string();
        let text =
            self.hb.render(&format!("{}/{name}", kind.prefix()), context).map_err(|e| RenderFailure::Template {
                file: file.clone(),
                line: e.line_no.map(|l| (l, e.column_no.unwrap_or(0))),
                reason: render_reason(&e),
            })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| RenderFailure::NotJson { file: file.clone(), reason: e.to_string() })?;
        let body = match kind {
            Kind::Policy => {
                let body = serde_json::to_string(&value).expect("a JSON value serializes");
                if body.chars().count() > SCP_MAX_CHARS {
                    return Err(RenderFailure::TooLarge {
                        file,
                        what: "policy",
                        size: body.chars().count(),
                        unit: "characters",
                        limit: SCP_MAX_CHARS,
                    });
                }
                body
            }
            Kind::Blueprint => {
                if text.len() > TEMPLATE_URL_MAX_BYTES {
                    return Err(RenderFailure::TooLarge {
                        file,
                        what: "template",
                        size: text.len(),
                        unit: "bytes",
                        limit: TEMPLATE_URL_MAX_BYTES,
                    });
                }
                text
            }
        };
        Ok(Rendered { digest: sha256_hex(body.as_bytes()), body })
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn render_reason(e: &RenderError) -> String {
    match e.reason() {
        RenderErrorReason::MissingVariable(Some(var)) => {
            format!("variable `{var}` is not defined (strict mode: every variable a template uses must be set)")
        }
        other => other.to_string(),
    }
}

/// Escape for `{{path}}`: the value as the inside of a JSON string literal.
fn json_escape_inner(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_string()
}

/// `{{json path}}`: the value as a complete JSON value.
fn json_helper(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let param = h.param(0).ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("json", 0))?;
    if param.is_value_missing() {
        let name = param.relative_path().cloned().unwrap_or_default();
        return Err(RenderErrorReason::MissingVariable(Some(name)).into());
    }
    let text = serde_json::to_string(param.value()).map_err(|e| RenderErrorReason::Other(e.to_string()))?;
    out.write(&text)?;
    Ok(())
}
