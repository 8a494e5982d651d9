//! Which plan to use when none is named: `$PLANRUN_PLAN`, else the single `*.toml`
//! in `./plans`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
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

/// The plan to use: `explicit`, else `env` (the value of `PLANRUN_PLAN`), else the
/// single `*.toml` in `<cwd>/plans`.
pub fn discover_plan(
    explicit: Option<&Path>,
    env: Option<&str>,
    cwd: &Path,
) -> Result<PathBuf, DiscoverError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = env.filter(|value| !value.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let dir = cwd.join("plans");
    if !dir.is_dir() {
        return Err(DiscoverError::NoPlansDir {
            dir: PathBuf::from("plans"),
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
            dir: PathBuf::from("plans"),
        }),
        [single] => Ok(Path::new("plans").join(single)),
        _ => Err(DiscoverError::Ambiguous {
            dir: PathBuf::from("plans"),
            found: found.iter().map(|name| format!("plans/{name}")).collect(),
        }),
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
}
