//! Terminal output: colour decisions and the miette report handler.

use std::io::IsTerminal;

use crate::args::ColorChoice;

/// Whether to colour output on stdout: `--color`, then `NO_COLOR`, then a terminal.
pub fn use_colour(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

pub fn install_miette_hook(choice: ColorChoice) {
    let colour = match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                && std::io::stderr().is_terminal()
        }
    };
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(colour)
                .unicode(colour)
                .terminal_links(false)
                .context_lines(1)
                .build(),
        )
    }));
}

/// Prints a diagnostic to stderr with the installed handler.
pub fn report(diagnostic: impl miette::Diagnostic + Send + Sync + 'static) {
    say_err!("{:?}", miette::Report::new(diagnostic));
}
