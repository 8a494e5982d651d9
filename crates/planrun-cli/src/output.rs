//! Terminal output: colour decisions and the miette report handler.

use std::io::IsTerminal;

use crate::args::ColorChoice;

/// Whether to colour output on stdout: `--color`, then `NO_COLOR`, then a terminal.
pub(crate) fn use_colour(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

pub(crate) fn install_miette_hook(choice: ColorChoice) {
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
pub(crate) fn report(diagnostic: impl miette::Diagnostic + Send + Sync + 'static) {
    say_err!("{:?}", miette::Report::new(diagnostic));
}

pub(crate) use planrun_transform::{count, count_signed};

/// A rate per second, formatted like a count (`12,345`); one decimal below 10, where
/// the decimal still says something (`0.4`).
pub(crate) fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        "0".to_owned()
    } else if per_second < 10.0 {
        format!("{per_second:.1}")
    } else {
        count(per_second.round() as u64)
    }
}

/// A duration: milliseconds below 10 s, tenths of seconds below 10 min, then minutes
/// and seconds.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        ms if ms < 10_000 => format!("{} ms", count(ms)),
        ms if ms < 600_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms => format!("{} min {} s", count(ms / 60_000), ms % 60_000 / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_durations_print_one_way() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(12_345), "12,345");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count_signed(-1_234), "-1,234");
        assert_eq!(rate(12_345.432_1), "12,345");
        assert_eq!(rate(12_345.5), "12,346");
        assert_eq!(rate(0.25), "0.2");
        assert_eq!(rate(f64::NAN), "0");
        assert_eq!(duration(187), "187 ms");
        assert_eq!(duration(9_999), "9,999 ms");
        assert_eq!(duration(16_040), "16.0 s");
        assert_eq!(duration(3_725_000), "62 min 5 s");
    }
}
