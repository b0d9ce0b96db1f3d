//! Pure construction of the wrapper command line for each isolation level.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Isolation;
use crate::Limits;

/// `PATH` inside the sandbox unless the spec overrides it.
pub(crate) const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Absolute paths of the host programs the jail uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Programs {
    pub(crate) sh: PathBuf,
    pub(crate) bwrap: Option<PathBuf>,
    pub(crate) unshare: Option<PathBuf>,
    pub(crate) prlimit: Option<PathBuf>,
}

/// Everything needed to build one run's command line.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) isolation: Isolation,
    pub(crate) programs: &'a Programs,
    /// Canonical work dir.
    pub(crate) workdir: &'a Path,
    pub(crate) command: &'a str,
    /// The complete environment of the command.
    pub(crate) env: &'a [(String, String)],
    pub(crate) allow_network: bool,
    /// Canonical extra paths.
    pub(crate) ro_paths: &'a [PathBuf],
    pub(crate) rw_paths: &'a [PathBuf],
    pub(crate) limits: &'a Limits,
    /// `cgroup.procs` of the run's pids cgroup, when one is used.
    pub(crate) cgroup_procs: Option<&'a Path>,
    /// Pass `--unshare-user --disable-userns` to bwrap (bubblewrap ≥ 0.8).
    pub(crate) bwrap_disable_userns: bool,
}

/// The final environment: the minimal base, then the spec's entries (which win).
pub(crate) fn environment(home: &str, spec_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), BASE_PATH.into()),
        ("HOME".into(), home.into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TMPDIR".into(), home.into()),
    ];
    for (k, v) in spec_env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// `prlimit --cpu=… --as=… --nproc=… --fsize=… --` or nothing when no limit is set.
fn prlimit_prefix(programs: &Programs, limits: &Limits) -> Option<Vec<OsString>> {
    let mut opts = Vec::new();
    if let Some(v) = limits.cpu_seconds {
        opts.push(format!("--cpu={v}"));
    }
    if let Some(v) = limits.memory_bytes {
        opts.push(format!("--as={v}"));
    }
    if let Some(v) = limits.max_processes {
        opts.push(format!("--nproc={v}"));
    }
    if let Some(v) = limits.max_file_bytes {
        opts.push(format!("--fsize={v}"));
    }
    if opts.is_empty() {
        return None;
    }
    let prlimit = programs.prlimit.as_ref()?;
    let mut argv: Vec<OsString> = vec![prlimit.into()];
    argv.extend(opts.into_iter().map(OsString::from));
    argv.push("--".into());
    Some(argv)
}

/// Whether the plan needs `prlimit` but none was found.
pub(crate) fn missing_prlimit(programs: &Programs, limits: &Limits) -> bool {
    programs.prlimit.is_none() && *limits != Limits::unlimited()
}

/// The full argv, program first.
pub(crate) fn build(plan: &Plan<'_>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(procs) = plan.cgroup_procs {
        // Join the run's cgroup before anything else starts, so no process escapes it.
        argv.push(plan.programs.sh.clone().into());
        argv.push("-c".into());
        argv.push(r#"echo $$ > "$0" && exec "$@""#.into());
        argv.push(procs.into());
    }
    match plan.isolation {
        Isolation::Bubblewrap => bwrap_args(plan, &mut argv),
        Isolation::Unshare => unshare_args(plan, &mut argv),
        Isolation::ProcessOnly => {}
    }
    // Inside the namespaces, so RLIMIT_NPROC counts the sandbox's own user namespace.
    if let Some(prefix) = prlimit_prefix(plan.programs, plan.limits) {
        argv.extend(prefix);
    }
    argv.push(plan.programs.sh.clone().into());
    argv.push("-c".into());
    argv.push(plan.command.into());
    argv
}

fn bwrap_args(plan: &Plan<'_>, argv: &mut Vec<OsString>) {
    let bwrap = plan
        .programs
        .bwrap
        .clone()
        .unwrap_or_else(|| "bwrap".into());
    argv.push(bwrap.into());
    let mut push = |args: &[&str]| argv.extend(args.iter().map(OsString::from));
    push(&["--unshare-all"]);
    if plan.allow_network {
        push(&["--share-net"]);
    }
    if plan.bwrap_disable_userns {
        push(&["--unshare-user", "--disable-userns"]);
    }
    // Run as root, bwrap keeps every capability inside the sandbox unless told otherwise;
    // with CAP_SYS_ADMIN the command could remount the read-only root writable.
    push(&["--cap-drop", "ALL"]);
    push(&["--die-with-parent", "--new-session"]);
    push(&[
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]);
    // A later mount shadows everything below its mount point, so parents go first: a
    // read-only `.git` inside the writable work dir stays read-only. Equal depths keep the
    // order read-only extras, writable extras, work dir.
    let mut binds: Vec<(&Path, &str)> = plan
        .ro_paths
        .iter()
        .map(|p| (p.as_path(), "--ro-bind"))
        .chain(plan.rw_paths.iter().map(|p| (p.as_path(), "--bind")))
        .chain(std::iter::once((plan.workdir, "--bind")))
        .collect();
    binds.sort_by_key(|(p, _)| p.components().count());
    for (path, flag) in binds {
        argv.extend([flag.into(), path.into(), path.into()]);
    }
    argv.extend(["--chdir".into(), plan.workdir.into(), "--clearenv".into()]);
    for (k, v) in plan.env {
        argv.extend(["--setenv".into(), k.into(), v.into()]);
    }
    argv.push("--".into());
}

fn unshare_args(plan: &Plan<'_>, argv: &mut Vec<OsString>) {
    let unshare = plan
        .programs
        .unshare
        .clone()
        .unwrap_or_else(|| "unshare".into());
    argv.push(unshare.into());
    argv.extend(
        ["--user", "--map-root-user"]
            .into_iter()
            .chain((!plan.allow_network).then_some("--net"))
            .chain([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--mount-proc",
                "--",
            ])
            .map(OsString::from),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs() -> Programs {
        Programs {
            sh: "/bin/sh".into(),
            bwrap: Some("/usr/bin/bwrap".into()),
            unshare: Some("/usr/bin/unshare".into()),
            prlimit: Some("/usr/bin/prlimit".into()),
        }
    }

    fn plan<'a>(
        isolation: Isolation,
        programs: &'a Programs,
        env: &'a [(String, String)],
        limits: &'a Limits,
    ) -> Plan<'a> {
        Plan {
            isolation,
            programs,
            workdir: Path::new("/tmp/w"),
            command: "black --check .",
            env,
            allow_network: false,
            ro_paths: &[],
            rw_paths: &[],
            limits,
            cgroup_procs: None,
            bwrap_disable_userns: true,
        }
    }

    fn strings(argv: &[OsString]) -> Vec<String> {
        argv.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn spec_env_overrides_the_base_environment() {
        let env = environment("/tmp", &[("PATH".into(), "/tools:/usr/bin".into())]);
        assert_eq!(
            env,
            vec![
                ("HOME".to_string(), "/tmp".to_string()),
                ("LANG".into(), "C.UTF-8".into()),
                ("TMPDIR".into(), "/tmp".into()),
                ("PATH".into(), "/tools:/usr/bin".into()),
            ]
        );
    }

    #[test]
    fn bubblewrap_has_no_network_a_read_only_host_and_a_clean_env() {
        let p = programs();
        let env = environment("/tmp", &[]);
        let limits = Limits::default();
        let argv = strings(&build(&plan(Isolation::Bubblewrap, &p, &env, &limits)));
        let joined = argv.join(" ");
        assert!(joined.starts_with("/usr/bin/bwrap --unshare-all --unshare-user"));
        assert!(!argv.contains(&"--share-net".to_string()));
        assert!(joined.contains("--cap-drop ALL --die-with-parent --new-session"));
        assert!(joined.contains("--ro-bind / / --dev /dev --proc /proc --tmpfs /tmp"));
        assert!(joined.contains("--bind /tmp/w /tmp/w --chdir /tmp/w --clearenv"));
        assert!(joined.contains("--setenv PATH /usr/local/bin:/usr/bin:/bin"));
        assert!(joined.contains(
            "-- /usr/bin/prlimit --cpu=600 --as=4294967296 --nproc=256 --fsize=1073741824 -- \
             /bin/sh -c"
        ));
        assert_eq!(argv.last().map(String::as_str), Some("black --check ."));
    }

    #[test]
    fn network_and_extra_paths_are_opt_in() {
        let p = programs();
        let env = environment("/tmp", &[]);
        let limits = Limits::unlimited();
        let ro = [PathBuf::from("/tmp/tools")];
        let rw = [PathBuf::from("/tmp/cache")];
        let mut plan = plan(Isolation::Bubblewrap, &p, &env, &limits);
        plan.allow_network = true;
        plan.ro_paths = &ro;
        plan.rw_paths = &rw;
        let joined = strings(&build(&plan)).join(" ");
        assert!(joined.contains("--unshare-all --share-net"));
        assert!(joined.contains(
            "--ro-bind /tmp/tools /tmp/tools --bind /tmp/cache /tmp/cache --bind /tmp/w /tmp/w"
        ));
        assert!(!joined.contains("prlimit"));
    }

    #[test]
    fn cgroup_join_comes_first_and_unshare_cuts_the_network() {
        let p = programs();
        let env = environment("/tmp", &[]);
        let limits = Limits::unlimited();
        let procs = PathBuf::from("/sys/fs/cgroup/pids/x/cgroup.procs");
        let mut plan = plan(Isolation::Unshare, &p, &env, &limits);
        plan.cgroup_procs = Some(&procs);
        let argv = strings(&build(&plan));
        assert_eq!(argv[0], "/bin/sh");
        assert_eq!(argv[3], "/sys/fs/cgroup/pids/x/cgroup.procs");
        assert_eq!(
            argv[4..].join(" "),
            "/usr/bin/unshare --user --map-root-user --net --pid --fork --kill-child --mount \
             --mount-proc -- /bin/sh -c black --check ."
        );
    }

    #[test]
    fn nested_read_only_paths_are_mounted_after_the_work_dir() {
        let p = programs();
        let env = environment("/tmp", &[]);
        let limits = Limits::unlimited();
        let ro = [PathBuf::from("/tmp/w/.git"), PathBuf::from("/opt/tools")];
        let mut plan = plan(Isolation::Bubblewrap, &p, &env, &limits);
        plan.ro_paths = &ro;
        let joined = strings(&build(&plan)).join(" ");
        assert!(
            joined.contains(
                "--ro-bind /opt/tools /opt/tools --bind /tmp/w /tmp/w \
                 --ro-bind /tmp/w/.git /tmp/w/.git --chdir /tmp/w"
            ),
            "{joined}"
        );
    }

    #[test]
    fn process_only_is_just_the_limits_and_the_shell() {
        let p = programs();
        let env = environment("/tmp", &[]);
        let mut limits = Limits::unlimited();
        limits.max_processes = Some(32);
        let argv = strings(&build(&plan(Isolation::ProcessOnly, &p, &env, &limits)));
        assert_eq!(
            argv,
            [
                "/usr/bin/prlimit",
                "--nproc=32",
                "--",
                "/bin/sh",
                "-c",
                "black --check ."
            ]
        );
        assert!(!missing_prlimit(&p, &limits));
        let none = Programs { prlimit: None, ..p };
        assert!(missing_prlimit(&none, &limits));
        assert!(!missing_prlimit(&none, &Limits::unlimited()));
    }
}
