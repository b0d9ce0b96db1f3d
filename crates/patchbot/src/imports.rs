//! Missing Python modules: which distribution provides an import name, and adding it to
//! `requirements.txt`. Pure functions.

use std::sync::LazyLock;

use regex::Regex;

/// Import names whose distribution on PyPI has a different name.
const IMPORT_TO_DISTRIBUTION: &[(&str, &str)] = &[
    ("Crypto", "pycryptodome"),
    ("Levenshtein", "Levenshtein"),
    ("MySQLdb", "mysqlclient"),
    ("OpenSSL", "pyOpenSSL"),
    ("PIL", "Pillow"),
    ("attr", "attrs"),
    ("bs4", "beautifulsoup4"),
    ("cv2", "opencv-python"),
    ("dateutil", "python-dateutil"),
    ("dns", "dnspython"),
    ("docx", "python-docx"),
    ("dotenv", "python-dotenv"),
    ("fitz", "PyMuPDF"),
    ("git", "GitPython"),
    ("jose", "python-jose"),
    ("jwt", "PyJWT"),
    ("kafka", "kafka-python"),
    ("magic", "python-magic"),
    ("multipart", "python-multipart"),
    ("nacl", "PyNaCl"),
    ("pkg_resources", "setuptools"),
    ("pptx", "python-pptx"),
    ("serial", "pyserial"),
    ("skimage", "scikit-image"),
    ("sklearn", "scikit-learn"),
    ("slugify", "python-slugify"),
    ("telegram", "python-telegram-bot"),
    ("usb", "pyusb"),
    ("websocket", "websocket-client"),
    ("yaml", "PyYAML"),
    ("zmq", "pyzmq"),
];

static MODULE_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r#"No module named ['"]?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)['"]?"#)
        .expect("valid regex")
});

/// The top-level module of the first `No module named 'x.y'` in a log.
pub fn missing_module(log: &str) -> Option<String> {
    MODULE_NOT_FOUND
        .captures(log)
        .and_then(|c| c.get(1))
        .and_then(|m| m.as_str().split('.').next().map(str::to_string))
}

static NODE_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r#"Cannot find (?:module|package) ['"]([^'"\s]+)['"]"#).expect("valid regex")
});

/// The npm package of the first `Cannot find module 'x'` / `Cannot find package 'x'` in a
/// Node log that names a package (not a relative path or a `node:` builtin):
/// `lodash/fp` → `lodash`, `@scope/pkg/sub` → `@scope/pkg`.
pub fn missing_node_package(log: &str) -> Option<String> {
    NODE_NOT_FOUND.captures_iter(log).find_map(|c| {
        let spec = c.get(1)?.as_str();
        if spec.starts_with(['.', '/']) || spec.starts_with("node:") {
            return None;
        }
        let mut parts = spec.split('/');
        let first = parts.next()?;
        let name = if first.starts_with('@') {
            format!("{first}/{}", parts.next()?)
        } else {
            first.to_string()
        };
        let valid = name.len() <= 214
            && name.trim_start_matches('@').chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '/')
            });
        valid.then_some(name)
    })
}

/// `package.json` `contents` with `"name": "range"` added to `dependencies` (`Ok(None)`
/// when already in `dependencies` or `devDependencies`). Textual, so key order and
/// formatting are kept; checked by parsing the result.
pub fn add_package_json_dependency(
    contents: &str,
    name: &str,
    range: &str,
) -> Result<Option<String>, String> {
    let parse = |text: &str| -> Result<serde_json::Value, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid package.json: {e}"))
    };
    let doc = parse(contents)?;
    if !doc.is_object() {
        return Err("package.json is not an object".into());
    }
    if ["dependencies", "devDependencies", "peerDependencies"]
        .iter()
        .any(|k| doc.get(k).and_then(|d| d.get(name)).is_some())
    {
        return Ok(None);
    }
    let entry = format!(
        "{}: {}",
        serde_json::Value::from(name),
        serde_json::Value::from(range)
    );
    let updated = match doc.get("dependencies") {
        Some(deps) if deps.is_object() => {
            let key = contents
                .find("\"dependencies\"")
                .ok_or("package.json dependencies are not in a shape PatchBot edits")?;
            let brace = key
                + contents[key..]
                    .find('{')
                    .ok_or("package.json dependencies are not in a shape PatchBot edits")?;
            let empty = deps.as_object().is_some_and(serde_json::Map::is_empty);
            let sep = if empty { "" } else { "," };
            format!(
                "{}\n    {entry}{sep}{}",
                &contents[..=brace],
                &contents[brace + 1..]
            )
        }
        Some(_) => return Err("package.json dependencies is not an object".into()),
        None => {
            let brace = contents.find('{').ok_or("package.json is not an object")?;
            let empty = doc.as_object().is_some_and(serde_json::Map::is_empty);
            let sep = if empty { "" } else { "," };
            format!(
                "{}\n  \"dependencies\": {{ {entry} }}{sep}{}",
                &contents[..=brace],
                &contents[brace + 1..]
            )
        }
    };
    let after = parse(&updated)?;
    if after
        .get("dependencies")
        .and_then(|d| d.get(name))
        .and_then(|v| v.as_str())
        == Some(range)
    {
        Ok(Some(updated))
    } else {
        Err("package.json dependencies are not in a shape PatchBot edits".into())
    }
}

/// The PyPI distribution that provides `module` (the module name itself unless the map
/// says otherwise).
pub fn distribution_for(module: &str) -> String {
    IMPORT_TO_DISTRIBUTION
        .iter()
        .find(|(m, _)| *m == module)
        .map_or_else(|| module.replace('_', "-"), |(_, d)| (*d).to_string())
}

/// PEP 503 normalised project name.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The project named by one requirements line, if it names one (not a comment, option or
/// URL).
fn requirement_name(line: &str) -> Option<String> {
    let line = line.split('#').next().unwrap_or("").trim();
    if line.is_empty() || line.starts_with('-') || line.contains("://") {
        return None;
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(line.len());
    (end > 0).then(|| normalize(&line[..end]))
}

/// `contents` with `distribution` appended, or `None` when it is already listed.
pub fn add_requirement(contents: &str, distribution: &str) -> Option<String> {
    let wanted = normalize(distribution);
    if contents
        .lines()
        .filter_map(requirement_name)
        .any(|name| name == wanted)
    {
        return None;
    }
    let mut out = contents.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(distribution);
    out.push('\n');
    Some(out)
}

/// `pyproject.toml` `contents` with `distribution` added to `[project] dependencies`
/// (`Ok(None)` when already listed); `Err` with a reason when the file has no such list or
/// is not valid TOML. The edit is textual (formatting and comments are kept) and checked by
/// parsing the result.
pub fn add_pyproject_dependency(
    contents: &str,
    distribution: &str,
) -> Result<Option<String>, String> {
    let deps = |text: &str| -> Result<Vec<String>, String> {
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| format!("invalid pyproject.toml: {e}"))?;
        doc.get("project")
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .ok_or_else(|| "pyproject.toml has no [project] dependencies list".to_string())
    };
    let wanted = normalize(distribution);
    if deps(contents)?
        .iter()
        .filter_map(|d| requirement_name(d))
        .any(|n| n == wanted)
    {
        return Ok(None);
    }
    let mut in_project = false;
    let mut offset = 0;
    for line in contents.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && !trimmed.starts_with("[[") {
            in_project =
                trimmed.trim_end_matches(|c: char| c == ']' || c.is_whitespace()) == "[project";
        } else if in_project
            && let Some(rest) = trimmed.strip_prefix("dependencies")
            && rest.trim_start().starts_with('=')
            && let Some(bracket) = line.find('[')
        {
            let at = offset + bracket + 1;
            let mut out = String::with_capacity(contents.len() + distribution.len() + 8);
            out.push_str(&contents[..at]);
            out.push_str(&format!("\n    \"{distribution}\","));
            out.push_str(&contents[at..]);
            let after = deps(&out)?;
            if after.iter().any(|d| d == distribution) {
                return Ok(Some(out));
            }
            break;
        }
        offset += line.len();
    }
    Err("pyproject.toml's [project] dependencies are not in a shape PatchBot edits".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_level_missing_module() {
        let log = "Traceback (most recent call last):\n  File \"app.py\", line 1\n    import \
                   yaml.loader\nModuleNotFoundError: No module named 'yaml.loader'\n";
        assert_eq!(missing_module(log).as_deref(), Some("yaml"));
        assert_eq!(
            missing_module("ImportError: No module named cv2").as_deref(),
            Some("cv2")
        );
        assert_eq!(missing_module("error: cannot find module 'x'"), None);
    }

    #[test]
    fn maps_import_names_to_distributions() {
        for (module, dist) in [
            ("yaml", "PyYAML"),
            ("cv2", "opencv-python"),
            ("PIL", "Pillow"),
            ("sklearn", "scikit-learn"),
            ("bs4", "beautifulsoup4"),
            ("dateutil", "python-dateutil"),
            ("requests", "requests"),
            ("typing_extensions", "typing-extensions"),
        ] {
            assert_eq!(distribution_for(module), dist);
        }
    }

    #[test]
    fn adds_to_pyproject_dependencies_keeping_the_rest() {
        let py = "[build-system]\nrequires = [\"setuptools\"]\n\n[project]\nname = \"demo\"\n\
                  dependencies = [\"requests>=2\"]  # runtime\n\n[tool.x]\ndependencies = []\n";
        let out = add_pyproject_dependency(py, "tabulate")
            .expect("valid")
            .expect("added");
        assert!(out.contains("dependencies = [\n    \"tabulate\",\"requests>=2\"]  # runtime"));
        assert!(out.ends_with("[tool.x]\ndependencies = []\n"));
        assert_eq!(
            add_pyproject_dependency(&out, "Tabulate").expect("valid"),
            None
        );
        let empty = "[project]\nname = \"d\"\ndependencies = []\n";
        let out = add_pyproject_dependency(empty, "PyYAML")
            .expect("valid")
            .expect("added");
        assert_eq!(
            out,
            "[project]\nname = \"d\"\ndependencies = [\n    \"PyYAML\",]\n"
        );
        assert!(add_pyproject_dependency("[project]\nname = \"d\"\n", "x").is_err());
        assert!(add_pyproject_dependency("[project\n", "x").is_err());
    }

    #[test]
    fn node_packages_come_from_cannot_find_module() {
        assert_eq!(
            missing_node_package("Error: Cannot find module 'left-pad'\nRequire stack:").as_deref(),
            Some("left-pad")
        );
        assert_eq!(
            missing_node_package("Error [ERR_MODULE_NOT_FOUND]: Cannot find package '@acme/ui/button' imported from /x.js").as_deref(),
            Some("@acme/ui")
        );
        assert_eq!(missing_node_package("Cannot find module './util'"), None);
        assert_eq!(missing_node_package("Cannot find module 'node:fs'"), None);
    }

    #[test]
    fn adds_to_package_json_keeping_order() {
        let pj = "{\n  \"name\": \"demo\",\n  \"dependencies\": {\n    \"zod\": \"^3\"\n  }\n}\n";
        let out = add_package_json_dependency(pj, "left-pad", "^1.3.0")
            .expect("valid")
            .expect("added");
        assert_eq!(
            out,
            "{\n  \"name\": \"demo\",\n  \"dependencies\": {\n    \"left-pad\": \"^1.3.0\",\n    \"zod\": \"^3\"\n  }\n}\n"
        );
        assert_eq!(
            add_package_json_dependency(&out, "zod", "^3").expect("valid"),
            None
        );
        let bare = "{\"name\": \"d\", \"private\": true}";
        let out = add_package_json_dependency(bare, "x", "^1.0.0")
            .expect("valid")
            .expect("added");
        assert!(out.starts_with("{\n  \"dependencies\": { \"x\": \"^1.0.0\" },\"name\""));
        let empty = "{\"dependencies\": {}}";
        assert!(
            add_package_json_dependency(empty, "x", "^1")
                .expect("valid")
                .is_some()
        );
        assert!(add_package_json_dependency("[1]", "x", "^1").is_err());
    }

    #[test]
    fn appends_unless_already_listed() {
        assert_eq!(
            add_requirement("requests==2.31\n# tools\n-r dev.txt", "PyYAML").as_deref(),
            Some("requests==2.31\n# tools\n-r dev.txt\nPyYAML\n")
        );
        assert_eq!(add_requirement("", "PyYAML").as_deref(), Some("PyYAML\n"));
        assert_eq!(add_requirement("pyyaml>=6  # config\n", "PyYAML"), None);
        assert_eq!(
            add_requirement("Python_Dateutil\n", "python-dateutil"),
            None
        );
    }
}
