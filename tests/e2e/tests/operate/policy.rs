//! The operator's IAM permission policies in `docs/iam/`, read as a list of allowed actions
//! per file, and IAM's action matching (`*` and `?` wildcards, case-insensitive).

use anyhow::Context as _;
use std::path::Path;

/// The `Allow` actions of one permission policy file.
pub struct PolicyFile {
    pub name: String,
    pub actions: Vec<String>,
}

impl PolicyFile {
    pub fn allows(&self, action: &str) -> bool {
        self.actions
            .iter()
            .any(|pattern| action_matches(pattern, action))
    }
}

/// Every `operator-*-policy.json` under `dir` that is a permission policy; trust policies
/// (statements with a `Principal`) say who may assume a role, not what it may do, so they are
/// left out.
pub fn permission_policies(dir: &Path) -> anyhow::Result<Vec<PolicyFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if !(name.starts_with("operator-") && name.ends_with("-policy.json")) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))?;
        let statements = match &doc["Statement"] {
            serde_json::Value::Array(list) => list.clone(),
            single => vec![single.clone()],
        };
        if statements.iter().any(|s| s.get("Principal").is_some()) {
            continue;
        }
        let actions = statements
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .flat_map(|s| match &s["Action"] {
                serde_json::Value::String(one) => vec![one.clone()],
                serde_json::Value::Array(list) => list
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        files.push(PolicyFile { name, actions });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// IAM action matching: case-insensitive, `*` any run of characters, `?` one character.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let pattern: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let action: Vec<char> = action.to_ascii_lowercase().chars().collect();
    glob(&pattern, &action)
}

fn glob(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((&p, rest)) => match text.split_first() {
            Some((&t, tail)) if p == '?' || p == t => glob(rest, tail),
            _ => false,
        },
    }
}
