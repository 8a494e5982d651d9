//! The copy of the target: a throwaway cluster on this machine, the target's roles
//! and `pg_dump -F c` read with the client tools and restored into it, then confined
//! to the applying role's privileges (`roles.rs`). The copy holds production's data:
//! it listens on a socket only, and goes when the rehearsal ends unless kept.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use planrun_tempdb::{KeptCluster, TempCluster};

use crate::db::connect::{redact, Source, Target};
use crate::db::pg_tools::{cluster_command, dbname_conninfo, libpq_command, pg_tool};
use crate::rehearse::error::RehearseError;
use crate::rehearse::report::{bytes, CopyInfo, CopyRoles, Identity, Kept};
use crate::rehearse::roles::{self, TargetAccess, COPY_SUPERUSER};

/// The copy, running, with the plan not yet applied.
pub(crate) struct Copy {
    cluster: TempCluster,
    database: String,
    applying_role: String,
    /// The copy's superuser in the copy's database.
    pub(crate) admin: Target,
    /// The applying role in the copy's database: where the plan runs.
    pub(crate) target: Target,
    pub(crate) roles: CopyRoles,
    tools: ClientTools,
    copied: Copied,
    jobs: usize,
}

/// The client tools the copy is made with.
struct ClientTools {
    pg_dumpall: PathBuf,
    pg_dump: PathBuf,
    psql: PathBuf,
    pg_restore: PathBuf,
}

/// What copying took.
struct Copied {
    dump_bytes: u64,
    dump_ms: u64,
    restore_ms: u64,
}

impl Copy {
    /// Copies `target`, whose identity is `original`, into a new throwaway cluster
    /// with `jobs` parallel restore jobs, and confines it to `access`. `note` hears
    /// each step, for live output.
    pub(crate) fn make(
        target: &Target,
        original: &Identity,
        access: &TargetAccess,
        jobs: usize,
        note: &dyn Fn(&str),
    ) -> Result<Copy, RehearseError> {
        note(&format!(
            "starting a throwaway PostgreSQL for a copy of {} ({})",
            original.database,
            bytes(original.size_bytes.max(0) as u64)
        ));
        let cluster = start_cluster()?;
        let tools = ClientTools::for_copy(&cluster, original.server_version_num)?;
        let database = original.database.clone();
        let copied = copy_into(&cluster, &tools, target, &database, jobs, note)?;
        let admin = Target::parse(
            &format!("{}?sslmode=disable", cluster.url(&database)),
            Source::Planrun,
        )?;
        let roles = roles::confine(&admin, &database, access, cluster.os_user())?;
        let copy_url = format!(
            "{}?sslmode=disable",
            cluster.url_as(access.applying_role(), &database)
        );
        Ok(Copy {
            target: Target::parse(&copy_url, Source::Planrun)?,
            applying_role: access.applying_role().to_owned(),
            cluster,
            database,
            admin,
            roles,
            tools,
            copied,
            jobs,
        })
    }

    /// The copy's server log, where it writes the lock waits.
    pub(crate) fn server_log(&self) -> &Path {
        self.cluster.log_file()
    }

    /// Removes the copy, or with `keep` leaves it running; what the report says of
    /// it, `identity` being the copy's before the plan ran.
    pub(crate) fn finish(self, keep: bool, identity: Identity) -> (CopyInfo, Option<KeptCluster>) {
        let kept = keep.then(|| {
            // As the applying role, so a session on the kept copy fires restored code
            // with production's privileges, not the copy's superuser's.
            let url = self.cluster.url_as(&self.applying_role, &self.database);
            (url, self.cluster.keep())
        });
        let info = CopyInfo {
            url: self.target.to_string(),
            identity,
            roles: self.roles,
            pg_dump: self.tools.pg_dump.display().to_string(),
            pg_restore: self.tools.pg_restore.display().to_string(),
            dump_bytes: self.copied.dump_bytes,
            dump_ms: self.copied.dump_ms,
            restore_ms: self.copied.restore_ms,
            restore_jobs: self.jobs.max(1),
            kept: kept.as_ref().map(|(url, kept)| Kept {
                url: url.clone(),
                stop_command: kept.stop_command.clone(),
            }),
        };
        (info, kept.map(|(_, kept)| kept))
    }
}

/// The copy holds production's data: socket-only, so no other local account can
/// connect. Its superuser is planrun's, so the target's roles fit beside it. Lock
/// waits are counted from the server log; 100 ms makes short waits visible.
fn start_cluster() -> Result<TempCluster, RehearseError> {
    Ok(TempCluster::builder()
        .socket_only()
        .superuser(COPY_SUPERUSER)
        .setting("log_lock_waits", "on")
        .setting("deadlock_timeout", "100ms")
        .start()?)
}

impl ClientTools {
    /// A pg_dump older than the server refuses to dump it; the cluster's own tools
    /// match the cluster, so they serve whenever the cluster is at least as new as
    /// the target (`target_version`, as `server_version_num`).
    fn for_copy(cluster: &TempCluster, target_version: i32) -> Result<ClientTools, RehearseError> {
        let cluster_version: i32 = cluster
            .psql("postgres", "SHOW server_version_num")?
            .trim()
            .parse()
            .map_err(|_| {
                RehearseError::Copy("cannot read the throwaway cluster's version".into())
            })?;
        let tool = |name: &str| {
            let own = cluster.bin_dir().join(name);
            if cluster_version / 10_000 >= target_version / 10_000 && own.is_file() {
                own
            } else {
                pg_tool(name)
            }
        };
        Ok(ClientTools {
            pg_dumpall: tool("pg_dumpall"),
            pg_dump: tool("pg_dump"),
            psql: tool("psql"),
            pg_restore: tool("pg_restore"),
        })
    }
}

/// The target's roles, then its dump, into `database` of `cluster`.
fn copy_into(
    cluster: &TempCluster,
    tools: &ClientTools,
    target: &Target,
    database: &str,
    jobs: usize,
    note: &dyn Fn(&str),
) -> Result<Copied, RehearseError> {
    // Inside the cluster's directory, so the dump goes when the copy goes.
    let cluster_dir = cluster.data_dir().parent().unwrap_or(cluster.data_dir());
    let dump_file = cluster_dir.join("target.dump");
    let roles_file = cluster_dir.join("target-roles.sql");
    note(&format!(
        "copying {} with pg_dumpall --roles-only and pg_dump",
        target
    ));
    let dumping = Instant::now();
    dump_roles(&tools.pg_dumpall, target, &roles_file)?;
    dump(&tools.pg_dump, target, &dump_file)?;
    let dump_ms = millis(dumping.elapsed());
    let dump_bytes = std::fs::metadata(&dump_file).map_or(0, |m| m.len());

    restore_roles(&tools.psql, cluster, &roles_file)?;
    let _ = std::fs::remove_file(&roles_file);
    if database != "postgres" {
        cluster.create_database(database)?;
    }
    note(&format!(
        "restoring {} into the throwaway cluster (pg_restore -j {})",
        bytes(dump_bytes),
        jobs.max(1)
    ));
    let restoring = Instant::now();
    restore(&tools.pg_restore, cluster, database, &dump_file, jobs)?;
    let restore_ms = millis(restoring.elapsed());
    let _ = std::fs::remove_file(&dump_file);
    Ok(Copied {
        dump_bytes,
        dump_ms,
        restore_ms,
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `pg_dump -F c` of `target` into `file`.
fn dump(pg_dump: &Path, target: &Target, file: &Path) -> Result<(), RehearseError> {
    let mut command = libpq_command(pg_dump, target);
    command.arg("--format=custom").arg("--file").arg(file);
    run(command, pg_dump)
}

fn restore(
    pg_restore: &Path,
    cluster: &TempCluster,
    database: &str,
    file: &Path,
    jobs: usize,
) -> Result<(), RehearseError> {
    // With owners and privileges: the target's roles are already in the copy.
    let output = cluster_command(pg_restore, cluster)
        .arg("--no-password")
        .arg(format!("--jobs={}", jobs.max(1)))
        // A conninfo string, so that a database name containing `=` stays a name.
        .arg(format!("--dbname={}", dbname_conninfo(database)))
        .arg(file)
        .output()
        .map_err(|error| {
            RehearseError::Copy(format!("cannot run {}: {error}", pg_restore.display()))
        })?;
    // A copy with errors (a missing extension, say) is not the target: rehearsing on
    // it would prove nothing, so any error stops here.
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n");
        return Err(RehearseError::Copy(format!(
            "{} into the throwaway cluster failed:\n{}",
            pg_restore.display(),
            redact(&tail)
        )));
    }
    Ok(())
}

/// `pg_dumpall --roles-only --no-role-passwords` of `target` into `file`, connected to
/// the target's own database.
fn dump_roles(pg_dumpall: &Path, target: &Target, file: &Path) -> Result<(), RehearseError> {
    let mut command = libpq_command(pg_dumpall, target);
    // pg_dumpall ignores the database of --dbname and tries `postgres`, then
    // `template1`, which a hardened server may not let the applying role into. A
    // conninfo string, as libpq would read a name containing `=` as one.
    command
        .args(["--roles-only", "--no-role-passwords", "--file"])
        .arg(file)
        .arg(format!("--database={}", dbname_conninfo(target.database())));
    run(command, pg_dumpall)
}

/// Runs the roles script in the copy, in one transaction; any error stops the
/// rehearsal, as a restore error does, for a copy without the target's roles would
/// prove nothing.
fn restore_roles(psql: &Path, cluster: &TempCluster, file: &Path) -> Result<(), RehearseError> {
    let mut command = cluster_command(psql, cluster);
    command
        .args(["-X", "-q", "--no-password", "--single-transaction"])
        .args(["-v", "ON_ERROR_STOP=1"])
        .args(["--dbname=dbname=postgres", "--file"])
        .arg(file);
    run(command, psql)
}

fn run(mut command: Command, program: &Path) -> Result<(), RehearseError> {
    let output = command.output().map_err(|error| {
        RehearseError::Copy(format!(
            "cannot run {}: {error}; install the PostgreSQL client tools or set PG_BIN",
            program.display()
        ))
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(RehearseError::Copy(format!(
        "{} failed: {}",
        program.display(),
        redact(String::from_utf8_lossy(&output.stderr).trim())
    )))
}
