//! A per-run pids cgroup: caps the number of processes even for root, for whom the kernel
//! ignores `RLIMIT_NPROC`, and finds every process of a run when it is time to kill them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// A cgroup directory under which this process may create per-run pids cgroups.
#[derive(Debug, Clone)]
pub(crate) struct CgroupParent {
    dir: PathBuf,
    sh: PathBuf,
}

impl CgroupParent {
    /// Finds a writable pids cgroup (v1 `pids` hierarchy, or the v2 cgroup this process is
    /// in when its subtree has the pids controller) and proves it works by moving a probe
    /// process into a fresh child. `None` when there is none, e.g. not root.
    pub(crate) async fn detect(sh: &Path) -> Option<Self> {
        let own = tokio::fs::read_to_string("/proc/self/cgroup").await.ok()?;
        for dir in candidates(&own) {
            let parent = CgroupParent {
                dir,
                sh: sh.to_path_buf(),
            };
            if parent.probe().await {
                return Some(parent);
            }
        }
        None
    }

    async fn probe(&self) -> bool {
        let Ok(cg) = self.create(Some(8)).await else {
            return false;
        };
        let joined = Command::new(&self.sh)
            .arg("-c")
            .arg(r#"echo $$ > "$0""#)
            .arg(cg.procs())
            .env_clear()
            .status()
            .await
            .is_ok_and(|s| s.success());
        cg.remove().await;
        joined
    }

    /// Creates a fresh child cgroup limited to `max_pids` processes (`None`: unlimited).
    pub(crate) async fn create(&self, max_pids: Option<u64>) -> std::io::Result<RunCgroup> {
        let dir = self.dir.join(format!(
            "sentinel-sandbox-{}",
            uuid::Uuid::new_v4().simple()
        ));
        tokio::fs::create_dir(&dir).await?;
        let cg = RunCgroup {
            dir,
            sh: self.sh.clone(),
        };
        if let Err(e) = tokio::fs::write(
            cg.dir.join("pids.max"),
            max_pids.map_or_else(|| "max".to_string(), |n| n.to_string()),
        )
        .await
        {
            cg.remove().await;
            return Err(e);
        }
        Ok(cg)
    }
}

/// Where to look for a pids cgroup, most specific first.
fn candidates(proc_self_cgroup: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "pids") {
            let root = Path::new("/sys/fs/cgroup/pids");
            if !rel.is_empty() {
                out.push(root.join(rel));
            }
            out.push(root.to_path_buf());
        } else if id == "0" && controllers.is_empty() {
            let root = Path::new("/sys/fs/cgroup");
            let dir = root.join(rel);
            let delegated = std::fs::read_to_string(dir.join("cgroup.subtree_control"))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == "pids"));
            if root.join("cgroup.controllers").exists() && delegated {
                out.push(dir);
            }
        }
    }
    out
}

/// One run's cgroup. Removed by [`RunCgroup::kill_and_remove`]; dropping it only tries a
/// last `rmdir`.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dir: PathBuf,
    sh: PathBuf,
}

impl RunCgroup {
    /// The file a process writes its pid to in order to join.
    pub(crate) fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// SIGKILLs every process still in the cgroup, then removes it.
    pub(crate) async fn kill_and_remove(self) {
        let kill_file = self.dir.join("cgroup.kill");
        if kill_file.exists() {
            let _ = tokio::fs::write(&kill_file, "1").await;
        }
        // cgroup v1 has no cgroup.kill: kill what is listed until nothing is left. A pids
        // cgroup cannot grow past pids.max, so this converges even against a fork bomb.
        for _ in 0..200 {
            let pids = tokio::fs::read_to_string(self.procs())
                .await
                .unwrap_or_default();
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if pids.is_empty() {
                break;
            }
            let _ = Command::new(&self.sh)
                .arg("-c")
                .arg(r#"kill -KILL "$@""#)
                .arg("sh")
                .args(&pids)
                .env_clear()
                .stderr(std::process::Stdio::null())
                .status()
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.remove().await;
    }

    async fn remove(&self) {
        for _ in 0..100 {
            match tokio::fs::remove_dir(&self.dir).await {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        tracing::warn!(cgroup = %self.dir.display(), "Could not remove the run's cgroup.");
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_pids_hierarchy_is_a_candidate() {
        let own = "9:name=systemd:/\n8:pids:/job/1\n4:memory:/x\n";
        let c = candidates(own);
        assert_eq!(
            c,
            vec![
                PathBuf::from("/sys/fs/cgroup/pids/job/1"),
                PathBuf::from("/sys/fs/cgroup/pids"),
            ]
        );
    }
}
