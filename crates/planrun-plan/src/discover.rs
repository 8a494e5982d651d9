//! Which plan to use when none is named: `$PLANRUN_PLAN`, else the single `*.toml`
//! in `./plans`; and, when the plan named does not exist, the plans nearby.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::suggest::closest;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// The plan named (by argument or `$PLANRUN_PLAN`) is not a file; `nearby` are
    /// the `*.toml` files beside it and in `./plans`, as paths from the working
    /// directory.
    #[error("plan file {}{} {}{}", path.display(), if *from_env { " (from PLANRUN_PLAN)" } else { "" }, if *is_dir { "is a directory" } else { "not found" }, Nearby { path, nearby })]
    NotFound {
        path: PathBuf,
        from_env: bool,
        is_dir: bool,
        nearby: Vec<String>,
    },
    #[error("no plan given and {dir} does not exist; name a plan file or set PLANRUN_PLAN")]
    NoPlansDir { dir: PathBuf },
    #[error("no plan given and no *.toml file in {dir}; name a plan file or set PLANRUN_PLAN")]
    NoPlan { dir: PathBuf },
    #[error("no plan given and {dir} holds several plans ({}); name one, or set PLANRUN_PLAN", found.join(", "))]
    Ambiguous { dir: PathBuf, found: Vec<String> },
    #[error("cannot list {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl DiscoverError {
    /// Whether the command line named no usable plan (a usage error), rather than a
    /// directory could not be read.
    pub fn is_usage(&self) -> bool {
        !matches!(self, DiscoverError::Io { .. })
    }
}

/// The plan to use: `explicit`, else `env` (the value of `PLANRUN_PLAN`), else the
/// single `*.toml` in `<cwd>/plans`.
pub fn discover_plan(
    explicit: Option<&Path>,
    env: Option<&str>,
    cwd: &Path,
) -> Result<PathBuf, DiscoverError> {
    if let Some(path) = explicit {
        return existing(path, false, cwd);
    }
    if let Some(path) = env.filter(|value| !value.is_empty()) {
        return existing(Path::new(path), true, cwd);
    }
    let dir = cwd.join("plans");
    if !dir.is_dir() {
        return Err(DiscoverError::NoPlansDir {
            dir: PathBuf::from("./plans"),
        });
    }
    let entries = std::fs::read_dir(&dir).map_err(|source| DiscoverError::Io {
        dir: dir.clone(),
        source,
    })?;
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    found.sort();
    match found.as_slice() {
        [] => Err(DiscoverError::NoPlan {
            dir: PathBuf::from("./plans"),
        }),
        [single] => Ok(Path::new("plans").join(single)),
        _ => Err(DiscoverError::Ambiguous {
            dir: PathBuf::from("./plans"),
            found: found.iter().map(|name| format!("plans/{name}")).collect(),
        }),
    }
}

/// `path` when it is a file (relative paths are read from `cwd`), else the error
/// naming the plans nearby.
fn existing(path: &Path, from_env: bool, cwd: &Path) -> Result<PathBuf, DiscoverError> {
    let resolved = cwd.join(path);
    if resolved.is_file() {
        return Ok(path.to_path_buf());
    }
    let is_dir = resolved.is_dir();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if is_dir {
        dirs.push(path.to_path_buf());
    }
    dirs.push(path.parent().map(Path::to_path_buf).unwrap_or_default());
    dirs.push(PathBuf::from("plans"));
    let mut seen = Vec::new();
    let mut nearby = Vec::new();
    for dir in dirs {
        let listed = cwd.join(&dir);
        let key = listed.canonicalize().unwrap_or(listed.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let Ok(entries) = std::fs::read_dir(&listed) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_file())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".toml"))
            .collect();
        names.sort();
        nearby.extend(
            names
                .into_iter()
                .map(|name| dir.join(name).display().to_string()),
        );
    }
    Err(DiscoverError::NotFound {
        path: path.to_path_buf(),
        from_env,
        is_dir,
        nearby,
    })
}

/// "; did you mean plans/shop.toml?" when one of `nearby` is a near miss of `path`'s
/// file name, else "; plans nearby: ..." listing them, else nothing.
struct Nearby<'a> {
    path: &'a Path,
    nearby: &'a [String],
}

impl fmt::Display for Nearby<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LISTED: usize = 8;
        // Stems, as every candidate ends in `.toml`.
        let stem = |path: &Path| {
            path.file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let name = stem(self.path);
        let names: Vec<String> = self.nearby.iter().map(|c| stem(Path::new(c))).collect();
        if let Some(near) = closest(&name, names.iter().map(String::as_str)) {
            let at = names.iter().position(|n| n == near).unwrap_or(0);
            return write!(f, "; did you mean {}?", self.nearby[at]);
        }
        match self.nearby {
            [] => Ok(()),
            listed if listed.len() <= LISTED => {
                write!(f, "; plans nearby: {}", listed.join(", "))
            }
            listed => write!(
                f,
                "; plans nearby: {}, and {} more",
                listed[..LISTED].join(", "),
                listed.len() - LISTED
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_beats_env_beats_the_plans_directory() {
        let cwd = std::env::temp_dir().join(format!("planrun-discover-{}", std::process::id()));
        let plans = cwd.join("plans");
        std::fs::create_dir_all(&plans).unwrap();
        assert!(matches!(
            discover_plan(None, None, &cwd),
            Err(DiscoverError::NoPlan { .. })
        ));
        std::fs::write(plans.join("a.toml"), "").unwrap();
        assert_eq!(
            discover_plan(None, None, &cwd).unwrap(),
            Path::new("plans/a.toml")
        );
        std::fs::write(plans.join("b.toml"), "").unwrap();
        let error = discover_plan(None, None, &cwd).unwrap_err().to_string();
        assert!(error.contains("plans/a.toml, plans/b.toml"), "{error}");
        std::fs::write(cwd.join("x.toml"), "").unwrap();
        std::fs::write(cwd.join("y.toml"), "").unwrap();
        assert_eq!(
            discover_plan(None, Some("x.toml"), &cwd).unwrap(),
            Path::new("x.toml")
        );
        assert_eq!(
            discover_plan(Some(Path::new("y.toml")), Some("x.toml"), &cwd).unwrap(),
            Path::new("y.toml")
        );
        std::fs::remove_dir_all(&cwd).unwrap();
    }

    #[test]
    fn a_plan_that_is_not_there_is_named_with_the_plans_nearby() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().to_path_buf();
        let error = |explicit: &str| {
            discover_plan(Some(Path::new(explicit)), None, &cwd)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(error("nope.toml"), "plan file nope.toml not found");
        std::fs::create_dir_all(cwd.join("plans")).unwrap();
        std::fs::write(cwd.join("plans/shop.toml"), "").unwrap();
        std::fs::write(cwd.join("other.toml"), "").unwrap();
        std::fs::write(cwd.join("notes.txt"), "").unwrap();
        assert_eq!(
            error("nope.toml"),
            "plan file nope.toml not found; plans nearby: other.toml, plans/shop.toml"
        );
        assert_eq!(
            error("plans/shp.toml"),
            "plan file plans/shp.toml not found; did you mean plans/shop.toml?"
        );
        assert_eq!(
            error("plans"),
            "plan file plans is a directory; plans nearby: plans/shop.toml, other.toml"
        );
        assert_eq!(
            discover_plan(None, Some("gone.toml"), &cwd)
                .unwrap_err()
                .to_string(),
            "plan file gone.toml (from PLANRUN_PLAN) not found; plans nearby: other.toml, plans/shop.toml"
        );
        assert_eq!(
            discover_plan(Some(Path::new("other.toml")), None, &cwd).unwrap(),
            Path::new("other.toml")
        );
    }
}
