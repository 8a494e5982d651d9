//! [`Planrun`]: the whole `planrun` command line with the native transforms a binary
//! chooses, so that a crate builds its own `planrun` without forking this one.

use clap::Parser;
use planrun_transform::{Registry, Transform};

use crate::args::Cli;

/// The `planrun` command line (every command, option and exit code of the shipped
/// binary) running with the native transforms you give it.
///
/// A plan names a native transform with `transform = "name"`; `planrun check` accepts
/// only the names in the registry, and `transforms`, `apply`, `plan`, `rehearse`,
/// `status`, `verify`, `reset` and `graph --status` all run with the same registry.
/// The shipped binary is `Planrun::new().with_memoir_transforms()`. Your own binary is
/// a crate with your transforms in its library and a `main.rs` of a few lines:
///
/// ```no_run
/// # mod my_migrations { pub fn register(_: &mut planrun_cli::Registry) {} }
/// fn main() {
///     let planrun = planrun_cli::Planrun::new().with_transforms(my_migrations::register);
///     std::process::exit(planrun.run(std::env::args_os()));
/// }
/// ```
///
/// [`Planrun::new`] starts with no transforms at all: a binary carries the memoir
/// migration's transforms (planrun's worked example, which `planrun demo` runs) only
/// when it asks for them with [`with_memoir_transforms`](Planrun::with_memoir_transforms),
/// so that `planrun transforms` lists exactly what your plans can use.
/// `examples/custom-transform` in planrun's repository is a complete crate.
#[derive(Debug, Clone, Default)]
pub struct Planrun {
    registry: Registry,
}

impl Planrun {
    /// The command line with no native transforms: plans of SQL steps only, until
    /// transforms are added.
    pub fn new() -> Planrun {
        Planrun::default()
    }

    /// Adds the transforms that `register` puts in the registry: by convention each
    /// crate of transforms has a `pub fn register(registry: &mut Registry)`, as
    /// `planrun_memoir::register` does. A transform registered under a name already
    /// taken replaces the earlier one.
    pub fn with_transforms(mut self, register: impl FnOnce(&mut Registry)) -> Planrun {
        register(&mut self.registry);
        self
    }

    /// Adds one transform, under its [`Transform::name`].
    pub fn with_transform(mut self, transform: impl Transform + 'static) -> Planrun {
        self.registry.register(transform);
        self
    }

    /// Adds the memoir migration's transforms (`memoir.split_chapters`,
    /// `memoir.collect_images`), which `plans/memoir.toml` and `planrun demo` need.
    pub fn with_memoir_transforms(self) -> Planrun {
        self.with_transforms(planrun_memoir::register)
    }

    /// The transforms this command line runs with.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs the command line on `args` (the program name first, as
    /// [`std::env::args_os`] gives them) and returns the exit code, as documented in
    /// `docs/exit-codes.md`: pass it to [`std::process::exit`].
    pub fn run(&self, args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
        let args: Vec<std::ffi::OsString> = args.into_iter().collect();
        let cli = match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(error) => {
                let _ = error.print();
                return match error.kind() {
                    clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion => planrun_engine::exit_codes::SUCCESS,
                    _ => {
                        crate::documents::usage_error(&args, &error);
                        planrun_engine::exit_codes::USAGE
                    }
                };
            }
        };
        crate::output::install_miette_hook(cli.global.color);
        crate::commands::dispatch(cli, &self.registry)
    }
}

impl From<Registry> for Planrun {
    /// The command line with exactly the transforms of `registry`.
    fn from(registry: Registry) -> Planrun {
        Planrun { registry }
    }
}

#[cfg(test)]
mod tests {
    use planrun_transform::{Transform, TransformContext, TransformError, TransformReport};

    use super::Planrun;

    struct Noop;

    impl Transform for Noop {
        fn name(&self) -> &'static str {
            "test.noop"
        }
        fn version(&self) -> &'static str {
            "1"
        }
        fn summary(&self) -> &'static str {
            "does nothing"
        }
        fn run(&self, _: &mut TransformContext<'_, '_>) -> Result<TransformReport, TransformError> {
            Ok(TransformReport::default())
        }
    }

    fn names(planrun: &Planrun) -> Vec<&'static str> {
        planrun.registry().iter().map(|t| t.name()).collect()
    }

    #[test]
    fn a_new_planrun_has_only_the_transforms_it_is_given() {
        assert!(names(&Planrun::new()).is_empty());
        assert_eq!(names(&Planrun::new().with_transform(Noop)), ["test.noop"]);
        assert_eq!(
            names(
                &Planrun::new()
                    .with_transforms(|registry| {
                        registry.register(Noop);
                    })
                    .with_memoir_transforms()
            ),
            [
                "memoir.collect_images",
                "memoir.keep_legacy",
                "memoir.link_section_images",
                "memoir.split_chapters",
                "memoir.unsplit_chapters",
                "test.noop"
            ]
        );
    }

    #[test]
    fn the_shipped_binary_is_planrun_with_the_memoir_transforms() {
        assert_eq!(
            names(&Planrun::new().with_memoir_transforms()),
            names(&Planrun::from(crate::default_registry()))
        );
    }
}
