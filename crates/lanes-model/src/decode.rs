//! Multi-document YAML decoding of files and directories, with errors that name the
//! file, the document, the object and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::object::{Object, ObjectKey, describe_value};

/// The largest document accepted, in bytes (the Kubernetes API server's request limit).
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;
/// The largest file read, in bytes.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The deepest nesting accepted in a document.
pub const MAX_DEPTH: usize = 64;

/// Where an object came from: the file and the 1-based index of the document in it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    /// File path as given (or `-` for standard input).
    pub file: String,
    /// 1-based index among the file's non-empty documents.
    pub doc: usize,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.doc)
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The input cannot be used.
    Error,
    /// The input works but is likely not what was meant.
    Warning,
}

/// One problem found in the input, printed as `FILE:DOC KIND/NAME: field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: String,
    /// The document index, when the problem is inside one.
    pub doc: Option<usize>,
    /// `Kind/name` of the object, when known.
    pub object: Option<String>,
    /// Field path, when the problem is in one field.
    pub path: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// An error about a whole file.
    pub fn file_error(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            doc: None,
            object: None,
            path: None,
            message: message.into(),
        }
    }

    /// A problem with an object from `source`.
    pub fn at(
        severity: Severity,
        source: &Source,
        object: Option<String>,
        path: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            file: source.file.clone(),
            doc: Some(source.doc),
            object,
            path: path.filter(|p| !p.is_empty()),
            message: message.into(),
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(doc) = self.doc {
            write!(f, ":{doc}")?;
        }
        if let Some(obj) = &self.object {
            write!(f, " {obj}")?;
        }
        f.write_str(": ")?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// An object and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The object.
    pub object: Object,
    /// Its source.
    pub source: Source,
}

/// One YAML document of a stream, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawDoc<'a> {
    text: std::borrow::Cow<'a, str>,
    first_line: usize,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || t.starts_with('%')
}

/// Splits a YAML stream into its documents at `---` and `...` markers (which YAML
/// only allows at column 0), keeping line numbers. Documents with no content (blank,
/// comments only) are left out.
fn split_documents(text: &str) -> Vec<RawDoc<'_>> {
    let mut docs = Vec::new();
    let mut start: Option<(usize, usize)> = Some((0, 1)); // byte offset, line number
    let mut pending_prefix = String::new();
    let mut offset = 0;
    let mut push = |from: usize, to: usize, first_line: usize, prefix: &mut String| {
        let body = &text[from..to];
        let has_content =
            !prefix.trim().is_empty() || body.lines().any(|l| !is_blank_or_comment(l));
        if has_content {
            let text = if prefix.is_empty() {
                std::borrow::Cow::Borrowed(body)
            } else {
                std::borrow::Cow::Owned(format!("{prefix}{body}"))
            };
            docs.push(RawDoc { text, first_line });
        }
        prefix.clear();
    };
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let line_no = idx + 1;
        let content = line.trim_end_matches(['\n', '\r']);
        if is_marker(content, "---") {
            if let Some((from, first)) = start.take() {
                push(from, offset, first, &mut pending_prefix);
            }
            // Content on the marker line (`--- {a: 1}`) belongs to the next document;
            // the marker becomes spaces so columns stay true.
            pending_prefix = format!("   {}", &line[3..]);
            start = Some((offset + line.len(), line_no));
        } else if is_marker(content, "...") {
            if let Some((from, first)) = start.take() {
                push(from, offset, first, &mut pending_prefix);
            }
            pending_prefix.clear();
        } else if start.is_none() && !is_blank_or_comment(content) {
            // Content after `...` without a new `---`: YAML reads it as a new document.
            start = Some((offset, line_no));
        }
        offset += line.len();
    }
    if let Some((from, first)) = start {
        push(from, text.len(), first, &mut pending_prefix);
    }
    docs
}

fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_total_scalar_bytes = MAX_DOCUMENT_BYTES;
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options
}

/// Turns a parser error into one line that gives the line and column in the file.
fn yaml_error_message(err: &serde_saphyr::Error, first_line: usize) -> String {
    let text = err.to_string();
    // The rendered error may end with its own location; keep the first line only and
    // give the location in file coordinates.
    let mut message = text
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace(
            "budget breached: ",
            "document too large or too deeply aliased: ",
        );
    if let Some(loc) = err.location()
        && loc.line() > 0
    {
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        let line = loc.line() as usize + first_line - 1;
        return format!(
            "invalid YAML at line {line} column {}: {message}",
            loc.column()
        );
    }
    format!("invalid YAML: {message}")
}

/// Decodes every document of a YAML (or JSON) text. Returns the objects that are valid
/// and a diagnostic for each that is not.
pub fn decode_str(file: &str, text: &str) -> (Vec<Loaded>, Vec<Diagnostic>) {
    let mut objects = Vec::new();
    let mut diags = Vec::new();
    let docs = split_documents(text);
    if docs.is_empty() {
        diags.push(Diagnostic::file_error(
            file,
            "no documents: the file holds no YAML objects",
        ));
        return (objects, diags);
    }
    for (object, mut found) in decode_all(file, &docs) {
        objects.extend(object);
        diags.append(&mut found);
    }
    (objects, diags)
}

/// Documents decoded per thread at least: fewer are not worth a thread.
const DOCS_PER_THREAD: usize = 256;

/// Decodes every document, in order; a long stream is split over the machine's cores.
fn decode_all(file: &str, docs: &[RawDoc<'_>]) -> Vec<(Option<Loaded>, Vec<Diagnostic>)> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(docs.len() / DOCS_PER_THREAD)
        .max(1);
    let sequential = |first: usize, docs: &[RawDoc<'_>]| -> Vec<_> {
        docs.iter()
            .enumerate()
            .map(|(i, doc)| decode_doc(file, first + i, doc))
            .collect()
    };
    if threads == 1 {
        return sequential(0, docs);
    }
    let chunk = docs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = docs
            .chunks(chunk)
            .enumerate()
            .map(|(n, part)| {
                let spawned = std::thread::Builder::new()
                    .spawn_scoped(scope, move || sequential(n * chunk, part));
                (n, part, spawned)
            })
            .collect();
        let mut out = Vec::with_capacity(docs.len());
        for (n, part, spawned) in handles {
            // A thread that cannot start (or fails) leaves its share to this one.
            match spawned
                .map_err(|_| ())
                .and_then(|h| h.join().map_err(|_| ()))
            {
                Ok(results) => out.extend(results),
                Err(()) => out.extend(sequential(n * chunk, part)),
            }
        }
        out
    })
}

/// Decodes document `i` (0-based) of `file`: the object, or what is wrong with it.
fn decode_doc(file: &str, i: usize, doc: &RawDoc<'_>) -> (Option<Loaded>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let source = Source {
        file: file.to_string(),
        doc: i + 1,
        line: doc.first_line,
    };
    if doc.text.len() > MAX_DOCUMENT_BYTES {
        diags.push(Diagnostic::at(
            Severity::Error,
            &source,
            None,
            None,
            format!(
                "document of {:.1} MiB starting at line {} is larger than the {} MiB limit",
                doc.text.len() as f64 / (1024.0 * 1024.0),
                doc.first_line,
                MAX_DOCUMENT_BYTES / (1024 * 1024)
            ),
        ));
        return (None, diags);
    }
    let value: Value = match serde_saphyr::from_str_with_options(&doc.text, yaml_options()) {
        Ok(v) => v,
        Err(e) => {
            diags.push(Diagnostic::at(
                Severity::Error,
                &source,
                None,
                None,
                yaml_error_message(&e, doc.first_line),
            ));
            return (None, diags);
        }
    };
    if value.is_null() {
        return (None, diags);
    }
    let described = describe_value(&value);
    match Object::from_value(value) {
        Ok(object) => (Some(Loaded { object, source }), diags),
        Err(errors) => {
            for e in errors {
                diags.push(Diagnostic::at(
                    Severity::Error,
                    &source,
                    described.clone(),
                    Some(e.path),
                    e.message,
                ));
            }
            (None, diags)
        }
    }
}

/// Decodes raw bytes: refuses binary content and text that is not UTF-8.
pub fn decode_bytes(file: &str, bytes: &[u8]) -> (Vec<Loaded>, Vec<Diagnostic>) {
    if let Some(pos) = bytes.iter().position(|&b| b == 0) {
        return (
            Vec::new(),
            vec![Diagnostic::file_error(
                file,
                format!("not a YAML text file: NUL byte at offset {pos}"),
            )],
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => decode_str(file, text.strip_prefix('\u{feff}').unwrap_or(text)),
        Err(e) => (
            Vec::new(),
            vec![Diagnostic::file_error(
                file,
                format!(
                    "not a YAML text file: invalid UTF-8 at byte {} (line {})",
                    e.valid_up_to(),
                    1 + bytes[..e.valid_up_to()]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                ),
            )],
        ),
    }
}

/// The YAML files a path stands for: the file itself, or a directory's `.yaml`/`.yml`
/// files in name order (not recursive).
pub fn expand_path(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| Diagnostic::file_error(&shown, format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| Diagnostic::file_error(&shown, format!("cannot list directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| Diagnostic::file_error(&shown, format!("cannot list directory: {e}")))?;
        let p = entry.path();
        let is_yaml = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if is_yaml && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Diagnostic::file_error(
            &shown,
            "directory holds no .yaml or .yml file",
        ));
    }
    Ok(files)
}

/// Reads one file, bounded by [`MAX_FILE_BYTES`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| Diagnostic::file_error(&shown, format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::file_error(
            &shown,
            format!(
                "file of {} MiB is larger than the {} MiB limit",
                meta.len() / (1024 * 1024),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    std::fs::read(path).map_err(|e| Diagnostic::file_error(&shown, format!("cannot read: {e}")))
}

/// Loads every object of the given files and directories. All or nothing: any error
/// (including one object defined twice) fails the whole load, with every problem listed.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, Vec<Diagnostic>> {
    let mut inputs = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        match expand_path(path) {
            Ok(files) => {
                for file in files {
                    match read_file(&file) {
                        Ok(bytes) => inputs.push((file.display().to_string(), bytes)),
                        Err(d) => diags.push(d),
                    }
                }
            }
            Err(d) => diags.push(d),
        }
    }
    let mut loaded = Vec::new();
    for (file, bytes) in &inputs {
        let (objs, ds) = decode_bytes(file, bytes);
        loaded.extend(objs);
        diags.extend(ds);
    }
    diags.extend(find_duplicates(&loaded));
    if diags.iter().any(Diagnostic::is_error) {
        Err(diags)
    } else {
        Ok(loaded)
    }
}

/// A diagnostic for every object defined more than once, naming the first definition.
pub fn find_duplicates(loaded: &[Loaded]) -> Vec<Diagnostic> {
    let mut first: BTreeMap<ObjectKey, &Source> = BTreeMap::new();
    let mut diags = Vec::new();
    for l in loaded {
        let key = l.object.key();
        if let Some(prev) = first.get(&key) {
            diags.push(Diagnostic::at(
                Severity::Error,
                &l.source,
                Some(l.object.display_name()),
                None,
                format!("duplicate object: {key} is also defined at {prev}"),
            ));
        } else {
            first.insert(key, &l.source);
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_with_line_numbers() {
        let text = "# c\na: 1\n---\n# only comment\n---\nb: 2\n...\n--- {c: 3}\n";
        let docs = split_documents(text);
        assert_eq!(docs.len(), 3, "{docs:?}");
        assert_eq!(docs[0].first_line, 1);
        assert_eq!(docs[1].first_line, 5);
        assert!(docs[1].text.contains("b: 2"));
        assert_eq!(docs[2].first_line, 8);
        assert!(docs[2].text.contains("{c: 3}"));
    }

    #[test]
    fn a_dash_line_inside_content_is_not_a_marker() {
        let docs = split_documents("a: |\n  --- not a marker\nb: 1\n");
        assert_eq!(docs.len(), 1);
    }
}
