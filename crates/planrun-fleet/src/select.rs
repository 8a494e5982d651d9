//! Which targets a wave's entry takes: a name, a glob (`*` any run of characters, `?`
//! one), or `label:NAME`.

use crate::model::FleetTarget;

/// One entry of a wave's `targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Label(String),
    Glob(String),
}

impl Pattern {
    pub(crate) fn parse(text: &str) -> Pattern {
        match text.strip_prefix("label:") {
            Some(label) => Pattern::Label(label.trim().to_owned()),
            None => Pattern::Glob(text.trim().to_owned()),
        }
    }
}

/// Whether `pattern` takes `target`.
pub(crate) fn matches(pattern: &Pattern, target: &FleetTarget) -> bool {
    match pattern {
        Pattern::Label(label) => target.labels.iter().any(|own| own == label),
        Pattern::Glob(glob) => glob_matches(glob.as_bytes(), target.name.as_bytes()),
    }
}

/// `*` and `?` over bytes (target names are ASCII), iteratively with one backtrack
/// point, so a pattern of many stars stays linear.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Connection;

    fn target(name: &str, labels: &[&str]) -> FleetTarget {
        FleetTarget {
            name: name.into(),
            connection: Connection::UrlEnv("X".into()),
            labels: labels.iter().map(|l| (*l).into()).collect(),
        }
    }

    #[test]
    fn names_globs_and_labels_take_what_they_say() {
        let eu = target("eu-7", &["canary"]);
        assert!(matches(&Pattern::parse("eu-7"), &eu));
        assert!(matches(&Pattern::parse("eu-*"), &eu));
        assert!(matches(&Pattern::parse("eu-?"), &eu));
        assert!(matches(&Pattern::parse("*"), &eu));
        assert!(matches(&Pattern::parse("label:canary"), &eu));
        assert!(!matches(&Pattern::parse("eu-??"), &eu));
        assert!(!matches(&Pattern::parse("us-*"), &eu));
        assert!(!matches(&Pattern::parse("label:eu"), &eu));
        assert!(!matches(&Pattern::parse("eu"), &eu));
        assert!(matches(&Pattern::parse("*-*7"), &eu));
    }
}
