//! Choosing a deterministic fix strategy from the classified failure. Pure: no I/O.
//!
//! The failing command is the best evidence of what CI checks, so it wins over the
//! classifier's tool hint: `black --check src tests` is fixed with `black src tests`,
//! `ruff format --check .` with `ruff format .`, `ruff check .` with `ruff check --fix .`,
//! `prettier --check .` with `prettier --write .`. When the command hides the tool
//! (`make lint`, `pre-commit run`), the hint picks the tool and the fix runs over the
//! whole repository; validation re-runs the original command either way.

use std::sync::LazyLock;

use regex::Regex;
use sentinel_events::FailureType;

use crate::imports;
use crate::tools::Tool;

/// flake8 codes that ruff fixes with a safe fix (checked against the pinned ruff).
pub const FLAKE8_CODES_RUFF_FIXES: &[&str] = &[
    "E401", "E713", "E714", "F401", "F541", "F632", "W291", "W292", "W293", "W605",
];

/// What to do about a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Try this plan.
    Plan(Plan),
    /// No deterministic strategy applies; the reason says why.
    NoFix(String),
    /// The failure must never be fixed by a code change.
    NotFixable(String),
}

/// A chosen strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Strategy name recorded in the attempt (`black`, `ruff_format`, `ruff_fix`,
    /// `flake8_via_ruff`, `prettier`, `eslint_fix`, `cargo_fmt`, `add_requirement`;
    /// several joined with `+`).
    pub name: String,
    /// Tools to provision and put on `PATH`, for the fix and for validation.
    pub tools: Vec<Tool>,
    /// What changes the code.
    pub action: Action,
    /// Prior probability that a validated candidate of this strategy is right.
    pub prior: f64,
    /// Whether the change cannot alter behaviour (formatters), so validation by the
    /// failing command alone is full evidence.
    pub behaviour_preserving: bool,
}

/// How a plan changes the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run these shell commands in the sandbox, in order.
    Run(Vec<String>),
    /// Declare known environment globals (`/* global describe, it */`) at the top of the
    /// files ESLint's `no-undef` names, then run `then` (e.g. `eslint --fix`).
    DeclareGlobals {
        /// File as the log names it (often an absolute CI path) → undefined globals.
        files: Vec<(String, Vec<String>)>,
        /// Commands to run afterwards.
        then: Vec<String>,
    },
    /// Add the npm package to `package.json` `dependencies`.
    AddNodeDependency {
        /// The package (`left-pad`, `@scope/pkg`).
        package: String,
    },
    /// Ask the configured LLM for candidate edits and validate each (see [`crate::llm`]);
    /// planned only by [`llm_plan`], when [`choose`] finds no deterministic strategy.
    LlmEdits,
    /// Add the distribution providing `module` to `requirements.txt`.
    AddRequirement {
        /// The missing top-level module.
        module: String,
        /// The distribution to add.
        distribution: String,
    },
}

/// One recognised fixer, before it is combined into a [`Plan`].
#[derive(Debug, Clone, PartialEq)]
struct Fixer {
    name: &'static str,
    tools: Vec<Tool>,
    command: String,
    prior: f64,
    behaviour_preserving: bool,
}

impl Fixer {
    fn formatter(name: &'static str, tool: Tool, command: String) -> Self {
        Fixer {
            name,
            tools: vec![tool],
            command,
            prior: 0.95,
            behaviour_preserving: true,
        }
    }
}

/// Chooses what to do about a failure.
///
/// * `infrastructure` / `unknown` → [`Choice::NotFixable`];
/// * `formatting` → the formatters the command (or else the hint) names;
/// * `linting` → `ruff check --fix`, flake8 codes through ruff, `eslint --fix`;
/// * `import_error` with a Python `No module named 'x'` → add the distribution to
///   `requirements.txt`;
/// * anything else → [`Choice::NoFix`].
pub fn choose(failure_type: FailureType, hint: Option<&str>, command: &str, log: &str) -> Choice {
    if !failure_type.is_fixable() {
        return Choice::NotFixable(format!(
            "{failure_type} failures are never fixed by changing code"
        ));
    }
    let hint = hint.map(|h| h.trim().to_ascii_lowercase());
    let hint = hint.as_deref();
    let invocations = invocations(command);
    // The command runs every tool it names and all must pass: lint autofixes first, then
    // formatters (formatting lint-fixed code is the canonical order).
    let fixers = match failure_type {
        FailureType::Formatting => {
            let mut fixers = linting(&invocations, None, log).unwrap_or_default();
            fixers.extend(formatting(&invocations, hint));
            fixers
        }
        FailureType::Linting => {
            let mut fixers = match linting(&invocations, hint, log) {
                Ok(fixers) => fixers,
                Err(reason) => return Choice::NoFix(reason),
            };
            let mut formatters: Vec<Fixer> = invocations.iter().filter_map(formatter_for).collect();
            formatters.dedup_by(|a, b| a.command == b.command);
            fixers.extend(formatters);
            fixers
        }
        FailureType::ImportError => return import_error(log),
        other => {
            return Choice::NoFix(format!(
                "no deterministic strategy for {other} failures (and no LLM fixer configured)"
            ));
        }
    };
    if fixers.is_empty() {
        return Choice::NoFix(format!(
            "no {failure_type} tool recognised in the command {command:?} or the hint {hint:?}"
        ));
    }
    if failure_type == FailureType::Linting && fixers.iter().any(|f| f.name == "eslint_fix") {
        let undefined = eslint_no_undef(log);
        if !undefined.is_empty() {
            let unknown: Vec<&str> = undefined
                .iter()
                .flat_map(|(_, names)| names)
                .map(String::as_str)
                .filter(|n| !KNOWN_GLOBALS.contains(n))
                .collect();
            if !unknown.is_empty() {
                return Choice::NoFix(format!(
                    "ESLint no-undef names that are no known environment global (a real bug \
                     or typo?): {}",
                    unknown.join(", ")
                ));
            }
            return Choice::Plan(Plan {
                name: "eslint_globals".into(),
                tools: vec![Tool::Eslint],
                action: Action::DeclareGlobals {
                    files: undefined,
                    then: fixers.into_iter().map(|f| f.command).collect(),
                },
                prior: 0.8,
                behaviour_preserving: true,
            });
        }
    }
    let mut tools: Vec<Tool> = fixers.iter().flat_map(|f| f.tools.clone()).collect();
    tools.sort();
    tools.dedup();
    Choice::Plan(Plan {
        name: fixers.iter().map(|f| f.name).collect::<Vec<_>>().join("+"),
        tools,
        prior: fixers.iter().map(|f| f.prior).fold(1.0, f64::min),
        behaviour_preserving: fixers.iter().all(|f| f.behaviour_preserving),
        action: Action::Run(fixers.into_iter().map(|f| f.command).collect()),
    })
}

/// The LLM strategy's plan for a failing `command`: the tools the command names are
/// provisioned for validation; `prior` is the configured prior (LLM edits can change
/// behaviour, so validation by the tests matters).
pub fn llm_plan(command: &str, prior: f64) -> Plan {
    Plan {
        name: crate::llm::STRATEGY.into(),
        tools: tools_named(command),
        action: Action::LlmEdits,
        prior,
        behaviour_preserving: false,
    }
}

/// The provisionable tools a command line runs (`black --check .` → black, `cargo fmt`
/// → rustfmt), so that reproducing the failure uses the pinned versions.
pub fn tools_named(command: &str) -> Vec<Tool> {
    let mut tools: Vec<Tool> = invocations(command)
        .iter()
        .filter_map(|inv| match inv.program.as_str() {
            "cargo fmt" => Some(Tool::Rustfmt),
            "cargo clippy" => Some(Tool::Clippy),
            program => program.parse::<Tool>().ok(),
        })
        .collect();
    tools.sort();
    tools.dedup();
    tools
}

/// The failure type a failing command implies on its own, when the log is not recognised:
/// a formatter in check mode → formatting, a linter → linting. `None` for anything else.
pub fn implied_failure_type(command: &str) -> Option<FailureType> {
    let invocations = invocations(command);
    if invocations.iter().any(|i| formatter_for(i).is_some()) {
        return Some(FailureType::Formatting);
    }
    invocations
        .iter()
        .any(|i| match (i.program.as_str(), i.subcommand()) {
            ("ruff", Some("format")) => false,
            ("ruff" | "flake8" | "eslint" | "cargo clippy", _) => true,
            _ => false,
        })
        .then_some(FailureType::Linting)
}

fn formatting(invocations: &[Invocation], hint: Option<&str>) -> Vec<Fixer> {
    let mut fixers: Vec<Fixer> = invocations.iter().filter_map(formatter_for).collect();
    fixers.dedup_by(|a, b| a.command == b.command);
    if fixers.is_empty() {
        let default =
            match hint {
                Some("black") => Some(Fixer::formatter("black", Tool::Black, "black .".into())),
                Some("ruff" | "ruff-format" | "ruff_format" | "ruff format") => Some(
                    Fixer::formatter("ruff_format", Tool::Ruff, "ruff format .".into()),
                ),
                Some("prettier") => Some(Fixer::formatter(
                    "prettier",
                    Tool::Prettier,
                    "prettier --write .".into(),
                )),
                Some("isort") => Some(Fixer::formatter("isort", Tool::Isort, "isort .".into())),
                Some("rustfmt" | "cargo-fmt" | "cargo fmt" | "cargo_fmt") => Some(
                    Fixer::formatter("cargo_fmt", Tool::Rustfmt, "cargo fmt --all".into()),
                ),
                _ => None,
            };
        fixers.extend(default);
    }
    fixers
}

fn formatter_for(inv: &Invocation) -> Option<Fixer> {
    match inv.program.as_str() {
        "black" => Some(Fixer::formatter(
            "black",
            Tool::Black,
            inv.rewrite("black", &[], &["--check", "--diff"], &[], "black ."),
        )),
        "ruff" if inv.subcommand() == Some("format") => Some(Fixer::formatter(
            "ruff_format",
            Tool::Ruff,
            inv.rewrite(
                "ruff",
                &["format"],
                &["format", "--check", "--diff"],
                &[],
                "ruff format .",
            ),
        )),
        "prettier" => Some(Fixer::formatter(
            "prettier",
            Tool::Prettier,
            inv.rewrite(
                "prettier",
                &[],
                &["--check", "-c", "--list-different", "-l", "--write", "-w"],
                &["--write"],
                "prettier --write .",
            ),
        )),
        "cargo fmt" => {
            let mut cmd = inv.rewrite("cargo fmt", &[], &["--check"], &[], "cargo fmt --all");
            if let Some(stripped) = cmd.strip_suffix(" --") {
                cmd = stripped.to_string();
            }
            Some(Fixer::formatter("cargo_fmt", Tool::Rustfmt, cmd))
        }
        "isort" => Some(Fixer::formatter(
            "isort",
            Tool::Isort,
            inv.rewrite(
                "isort",
                &[],
                &["--check-only", "--check", "-c", "--diff"],
                &[],
                "isort .",
            ),
        )),
        "rustfmt" => Some(Fixer::formatter(
            "cargo_fmt",
            Tool::Rustfmt,
            inv.rewrite("rustfmt", &[], &["--check"], &[], "cargo fmt --all"),
        )),
        _ => None,
    }
}

static FLAKE8_CODE: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"(?m):\d+:\d+: ([A-Z]\d{3}) ").expect("valid regex")
});

fn linting(
    invocations: &[Invocation],
    hint: Option<&str>,
    log: &str,
) -> std::result::Result<Vec<Fixer>, String> {
    let ruff_fix = |command: String| Fixer {
        name: "ruff_fix",
        tools: vec![Tool::Ruff],
        command,
        prior: 0.9,
        behaviour_preserving: false,
    };
    let eslint_fix = |command: String| Fixer {
        name: "eslint_fix",
        tools: vec![Tool::Eslint],
        command,
        prior: 0.85,
        behaviour_preserving: false,
    };
    let mut fixers = Vec::new();
    let mut flake8 = false;
    for inv in invocations {
        match (inv.program.as_str(), inv.subcommand()) {
            ("ruff", Some("check")) => fixers.push(ruff_fix(inv.rewrite(
                "ruff",
                &["check"],
                &[
                    "check",
                    "--no-fix",
                    "--diff",
                    "--exit-zero",
                    "--watch",
                    "-w",
                ],
                &["--fix"],
                "ruff check --fix .",
            ))),
            ("ruff", Some("format")) => {}
            ("ruff", _) => fixers.push(ruff_fix("ruff check --fix .".into())),
            ("flake8", _) => flake8 = true,
            ("cargo clippy", _) => fixers.push(clippy_fix(inv)),
            ("eslint", _) => fixers.push(eslint_fix(inv.rewrite(
                "eslint",
                &[],
                &[],
                &["--fix"],
                "eslint --fix .",
            ))),
            _ => {}
        }
    }
    if fixers.is_empty() && !flake8 {
        match hint {
            Some("ruff") => fixers.push(ruff_fix("ruff check --fix .".into())),
            Some("eslint") => fixers.push(eslint_fix("eslint --fix .".into())),
            Some("clippy" | "cargo-clippy" | "cargo clippy") => {
                fixers.push(clippy_fix(&Invocation {
                    program: "cargo clippy".into(),
                    args: Vec::new(),
                    exact: true,
                }))
            }
            Some("flake8" | "pyflakes" | "pycodestyle") => flake8 = true,
            _ => {}
        }
    }
    if flake8 {
        let mut codes: Vec<&str> = FLAKE8_CODE
            .captures_iter(log)
            .filter_map(|c| c.get(1).map(|m| m.as_str()))
            .collect();
        codes.sort_unstable();
        codes.dedup();
        if codes.is_empty() {
            return Err("no flake8 violation codes found in the log".into());
        }
        let unfixable: Vec<&str> = codes
            .iter()
            .copied()
            .filter(|c| !FLAKE8_CODES_RUFF_FIXES.contains(c))
            .collect();
        if !unfixable.is_empty() {
            return Err(format!(
                "flake8 reported codes without a safe automatic fix: {}",
                unfixable.join(", ")
            ));
        }
        fixers.push(Fixer {
            name: "flake8_via_ruff",
            tools: vec![Tool::Ruff, Tool::Flake8],
            command: format!("ruff check --fix --select {} .", codes.join(",")),
            prior: 0.85,
            behaviour_preserving: false,
        });
    }
    Ok(fixers)
}

/// `cargo clippy --fix`: applies only the suggestions clippy marks machine-applicable (the
/// safe ones), keeping the command's package/target selection; lint levels after `--` are
/// dropped (they only decide what fails, not what is fixable). Validation re-runs the
/// original command, so lints without a safe fix leave the failure standing.
fn clippy_fix(inv: &Invocation) -> Fixer {
    let mut command =
        String::from("cargo clippy --fix --allow-dirty --allow-staged --allow-no-vcs");
    if inv.exact {
        for arg in inv.args.iter().take_while(|a| *a != "--") {
            if !matches!(
                arg.as_str(),
                "--fix" | "--allow-dirty" | "--allow-staged" | "--allow-no-vcs"
            ) {
                command.push(' ');
                command.push_str(arg);
            }
        }
    }
    Fixer {
        name: "clippy_fix",
        tools: vec![Tool::Clippy],
        command,
        prior: 0.8,
        behaviour_preserving: false,
    }
}

/// Globals of the usual JavaScript environments (test runners, Node, browsers) that ESLint's
/// `no-undef` reports when the configuration does not declare the environment.
pub const KNOWN_GLOBALS: &[&str] = &[
    // jest / mocha / jasmine / vitest
    "describe",
    "it",
    "test",
    "expect",
    "beforeEach",
    "afterEach",
    "beforeAll",
    "afterAll",
    "before",
    "after",
    "context",
    "jest",
    "vi",
    "suite",
    "setup",
    "teardown",
    // Node
    "module",
    "require",
    "exports",
    "process",
    "__dirname",
    "__filename",
    "Buffer",
    "global",
    // Node and browsers
    "console",
    "setTimeout",
    "clearTimeout",
    "setInterval",
    "clearInterval",
    "fetch",
    "URL",
    "URLSearchParams",
    "TextEncoder",
    "TextDecoder",
    "structuredClone",
    "queueMicrotask",
    // browsers
    "window",
    "document",
    "navigator",
    "location",
    "localStorage",
    "sessionStorage",
    "alert",
    "HTMLElement",
    "Event",
    "CustomEvent",
    "requestAnimationFrame",
];

static ESLINT_NO_UNDEF: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"^\s+\d+:\d+\s+error\s+'([A-Za-z_$][\w$]*)' is not defined\s+no-undef\s*$")
        .expect("valid regex")
});

/// ESLint's stylish output: file header lines, then indented messages. Returns each file
/// with the names `no-undef` reported in it.
fn eslint_no_undef(log: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut file: Option<String> = None;
    for line in log.lines() {
        if !line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
            let l = line.trim();
            file = [
                ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts", ".vue",
            ]
            .iter()
            .any(|ext| l.ends_with(ext))
            .then(|| l.to_string());
            continue;
        }
        if let (Some(f), Some(c)) = (&file, ESLINT_NO_UNDEF.captures(line))
            && let Some(name) = c.get(1)
        {
            let name = name.as_str().to_string();
            match out.iter_mut().find(|(p, _)| p == f) {
                Some((_, names)) if !names.contains(&name) => names.push(name),
                Some(_) => {}
                None => out.push((f.clone(), vec![name])),
            }
        }
    }
    out
}

fn import_error(log: &str) -> Choice {
    match imports::missing_module(log) {
        Some(module) => Choice::Plan(Plan {
            name: "add_requirement".into(),
            tools: Vec::new(),
            action: Action::AddRequirement {
                distribution: imports::distribution_for(&module),
                module,
            },
            prior: 0.6,
            behaviour_preserving: false,
        }),
        None => match imports::missing_node_package(log) {
            Some(package) => Choice::Plan(Plan {
                name: "add_node_dependency".into(),
                tools: Vec::new(),
                action: Action::AddNodeDependency { package },
                prior: 0.6,
                behaviour_preserving: false,
            }),
            None => Choice::NoFix(
                "no Python `No module named '…'` or Node `Cannot find module '…'` naming a \
                 package in the log; other import errors have no deterministic fix"
                    .into(),
            ),
        },
    }
}

/// One simple command inside the failing command line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invocation {
    /// The tool, with wrappers (`python -m`, `uv run`, `npx`, …) and paths stripped;
    /// `cargo fmt` for cargo's subcommand.
    program: String,
    /// Arguments after the program.
    args: Vec<String>,
    /// Whether the words were split exactly (no quotes, expansions or redirections), so
    /// they can be reused in a fix command.
    exact: bool,
}

impl Invocation {
    fn subcommand(&self) -> Option<&str> {
        self.args
            .iter()
            .find(|a| !a.starts_with('-'))
            .map(String::as_str)
    }

    /// `program` + `prefix` + the original arguments minus `drop`, plus `add`; or
    /// `default` when the arguments cannot be reused exactly.
    fn rewrite(
        &self,
        program: &str,
        prefix: &[&str],
        drop: &[&str],
        add: &[&str],
        default: &str,
    ) -> String {
        if !self.exact {
            return default.to_string();
        }
        let mut words: Vec<&str> = vec![program];
        words.extend(prefix);
        words.extend(
            self.args
                .iter()
                .map(String::as_str)
                .filter(|a| !drop.contains(a)),
        );
        words.extend(add);
        words.join(" ")
    }
}

/// Splits a shell command line into simple commands, best effort.
fn invocations(command: &str) -> Vec<Invocation> {
    let mut normalized = command.to_string();
    for sep in ["&&", "||", ";", "|", "\n", "&"] {
        normalized = normalized.replace(sep, "\u{0}");
    }
    normalized
        .split('\u{0}')
        .filter_map(|segment| {
            let exact =
                !segment.contains(['\'', '"', '`', '$', '\\', '(', ')', '<', '>', '{', '}']);
            let mut words = segment.split_whitespace().map(str::to_string).peekable();
            // Leading `VAR=value` assignments.
            while words.peek().is_some_and(|w| is_assignment(w)) {
                words.next();
            }
            let mut program = basename(&words.next()?);
            loop {
                let next = words.peek().cloned();
                let wrapper_takes_next = match (program.as_str(), next.as_deref()) {
                    (p, Some("-m")) if p.starts_with("python") => {
                        words.next();
                        true
                    }
                    (
                        "uv" | "poetry" | "pipenv" | "pdm" | "hatch" | "pipx" | "rye",
                        Some("run"),
                    )
                    | ("pnpm" | "yarn" | "bun", Some("exec" | "dlx" | "x")) => {
                        words.next();
                        true
                    }
                    (
                        "pnpm" | "yarn" | "bun" | "npx" | "bunx" | "exec" | "env" | "time" | "nice",
                        _,
                    ) => true,
                    _ => false,
                };
                if !wrapper_takes_next {
                    break;
                }
                while words
                    .peek()
                    .is_some_and(|w| w.starts_with('-') || is_assignment(w))
                {
                    words.next();
                }
                program = basename(&words.next()?);
            }
            // `npx prettier@3` names a version.
            if let Some((name, _)) = program.split_once('@')
                && !name.is_empty()
            {
                program = name.to_string();
            }
            let mut args: Vec<String> = words.collect();
            if program == "cargo"
                && let Some(sub @ ("fmt" | "clippy")) = args.first().map(String::as_str)
            {
                program = format!("cargo {sub}");
                args.remove(0);
            }
            Some(Invocation {
                program,
                args,
                exact,
            })
        })
        .collect()
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn basename(word: &str) -> String {
    word.rsplit('/').next().unwrap_or(word).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(choice: Choice) -> Plan {
        match choice {
            Choice::Plan(p) => p,
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    fn commands(p: &Plan) -> Vec<&str> {
        match &p.action {
            Action::Run(c) => c.iter().map(String::as_str).collect(),
            other => panic!("expected commands, got {other:?}"),
        }
    }

    #[test]
    fn infrastructure_and_unknown_are_never_fixed() {
        for t in [FailureType::Infrastructure, FailureType::Unknown] {
            assert!(matches!(
                choose(t, Some("black"), "black --check .", ""),
                Choice::NotFixable(_)
            ));
        }
    }

    #[test]
    fn formatters_come_from_the_command_with_its_paths() {
        let p = plan(choose(
            FailureType::Formatting,
            Some("ruff-format"),
            "black --check --diff -l 100 src tests",
            "",
        ));
        assert_eq!(p.name, "black");
        assert_eq!(p.tools, [Tool::Black]);
        assert_eq!(commands(&p), ["black -l 100 src tests"]);
        assert!(p.behaviour_preserving);
        assert!((p.prior - 0.95).abs() < 1e-9);

        let p = plan(choose(
            FailureType::Formatting,
            None,
            "python -m ruff format --check .",
            "",
        ));
        assert_eq!(p.name, "ruff_format");
        assert_eq!(commands(&p), ["ruff format ."]);

        let p = plan(choose(
            FailureType::Formatting,
            None,
            "npx prettier@3 --check 'src/**/*.js'",
            "",
        ));
        assert_eq!(commands(&p), ["prettier --write ."]);
        let p = plan(choose(
            FailureType::Formatting,
            None,
            "npx prettier --check src",
            "",
        ));
        assert_eq!(commands(&p), ["prettier src --write"]);

        let p = plan(choose(
            FailureType::Formatting,
            None,
            "cargo fmt --all -- --check",
            "",
        ));
        assert_eq!(commands(&p), ["cargo fmt --all"]);
        assert_eq!(p.tools, [Tool::Rustfmt]);
    }

    #[test]
    fn several_formatters_in_one_command_are_all_applied() {
        let p = plan(choose(
            FailureType::Formatting,
            None,
            "pip install -q . && ruff format --check . && black --check .",
            "",
        ));
        assert_eq!(p.name, "ruff_format+black");
        assert_eq!(p.tools, [Tool::Ruff, Tool::Black]);
        assert_eq!(commands(&p), ["ruff format .", "black ."]);
    }

    #[test]
    fn the_hint_names_the_tool_when_the_command_hides_it() {
        let p = plan(choose(
            FailureType::Formatting,
            Some("Black"),
            "make lint",
            "",
        ));
        assert_eq!(commands(&p), ["black ."]);
        let p = plan(choose(
            FailureType::Formatting,
            Some("ruff"),
            "tox -e fmt",
            "",
        ));
        assert_eq!(commands(&p), ["ruff format ."]);
        assert!(matches!(
            choose(FailureType::Formatting, None, "make lint", ""),
            Choice::NoFix(_)
        ));
    }

    #[test]
    fn ruff_lint_failures_get_ruff_fix() {
        let p = plan(choose(
            FailureType::Linting,
            None,
            "ruff check --output-format=github src",
            "",
        ));
        assert_eq!(p.name, "ruff_fix");
        assert_eq!(
            commands(&p),
            ["ruff check --output-format=github src --fix"]
        );
        assert!(!p.behaviour_preserving);
        let p = plan(choose(FailureType::Linting, Some("ruff"), "make lint", ""));
        assert_eq!(commands(&p), ["ruff check --fix ."]);
    }

    #[test]
    fn flake8_codes_go_through_ruff_when_all_are_fixable() {
        let log = "./app.py:1:1: F401 'os' imported but unused\n./app.py:3:6: W291 trailing \
                   whitespace\n./b.py:1:1: F401 'sys' imported but unused\n";
        let p = plan(choose(
            FailureType::Linting,
            Some("flake8"),
            "flake8 .",
            log,
        ));
        assert_eq!(p.name, "flake8_via_ruff");
        assert_eq!(p.tools, [Tool::Ruff, Tool::Flake8]);
        assert_eq!(commands(&p), ["ruff check --fix --select F401,W291 ."]);

        let log = "./app.py:1:80: E501 line too long (88 > 79 characters)\n";
        match choose(FailureType::Linting, None, "python -m flake8", log) {
            Choice::NoFix(reason) => assert!(reason.contains("E501"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_python_modules_become_requirements() {
        let p = plan(choose(
            FailureType::ImportError,
            None,
            "pytest",
            "E   ModuleNotFoundError: No module named 'yaml'",
        ));
        assert_eq!(
            p.action,
            Action::AddRequirement {
                module: "yaml".into(),
                distribution: "PyYAML".into()
            }
        );
    }

    #[test]
    fn other_failure_types_have_no_deterministic_fix() {
        for t in [
            FailureType::TestFailure,
            FailureType::TypeChecking,
            FailureType::BuildError,
        ] {
            assert!(matches!(choose(t, None, "pytest", ""), Choice::NoFix(_)));
        }
    }

    #[test]
    fn tools_named_in_a_command_are_the_ones_to_provision() {
        assert_eq!(
            tools_named("pip install . && python -m black --check . && npx eslint src"),
            [Tool::Black, Tool::Eslint]
        );
        assert_eq!(tools_named("cargo fmt --all -- --check"), [Tool::Rustfmt]);
        assert!(tools_named("make lint").is_empty());
    }

    #[test]
    fn eslint_no_undef_known_globals_are_declared_unknown_ones_refused() {
        let log = "\n/ci/work/test/app.test.js\n  1:1   error  'describe' is not defined  \
                   no-undef\n  2:3   error  'it' is not defined        no-undef\n  3:5   \
                   error  'it' is not defined  no-undef\n\n/ci/work/eslint.config.js\n  1:1  \
                   error  'module' is not defined  no-undef\n\n✖ 4 problems (4 errors, 0 \
                   warnings)\n";
        let p = plan(choose(FailureType::Linting, None, "npx eslint .", log));
        assert_eq!(p.name, "eslint_globals");
        assert_eq!(
            p.action,
            Action::DeclareGlobals {
                files: vec![
                    (
                        "/ci/work/test/app.test.js".into(),
                        vec!["describe".into(), "it".into()]
                    ),
                    ("/ci/work/eslint.config.js".into(), vec!["module".into()]),
                ],
                then: vec!["eslint . --fix".into()],
            }
        );
        let typo = "/ci/app.js\n  1:1  error  'conosle' is not defined  no-undef\n";
        match choose(FailureType::Linting, None, "eslint .", typo) {
            Choice::NoFix(r) => assert!(r.contains("conosle"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn isort_and_clippy_fix_what_they_check() {
        let p = plan(choose(
            FailureType::Formatting,
            None,
            "isort --check-only --diff src",
            "",
        ));
        assert_eq!(p.name, "isort");
        assert_eq!(p.tools, [Tool::Isort]);
        assert_eq!(commands(&p), ["isort src"]);
        let p = plan(choose(
            FailureType::Linting,
            None,
            "cargo clippy --all-targets -- -D warnings",
            "",
        ));
        assert_eq!(p.name, "clippy_fix");
        assert_eq!(p.tools, [Tool::Clippy]);
        assert_eq!(
            commands(&p),
            ["cargo clippy --fix --allow-dirty --allow-staged --allow-no-vcs --all-targets"]
        );
        assert_eq!(
            implied_failure_type("cargo clippy -- -D warnings"),
            Some(FailureType::Linting)
        );
        assert_eq!(
            implied_failure_type("isort --check ."),
            Some(FailureType::Formatting)
        );
        assert_eq!(implied_failure_type("pytest"), None);
    }

    #[test]
    fn wrappers_and_assignments_are_seen_through() {
        let inv = invocations("FOO=1 uv run --frozen black --check . | tee out; cd x && make");
        assert_eq!(inv[0].program, "black");
        assert_eq!(inv[0].args, ["--check", "."]);
        assert_eq!(inv[1].program, "tee");
        assert_eq!(inv[3].program, "make");
        let inv = invocations("./node_modules/.bin/eslint \"src\"");
        assert_eq!(inv[0].program, "eslint");
        assert!(!inv[0].exact);
    }
}
