//! "Did you mean" suggestions for misspelt keys, stage ids and transform names.

/// The candidate closest to `input`, when it is close enough to be a plausible typo.
pub(crate) fn closest<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(input, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_a_near_miss_and_nothing_for_a_stranger() {
        let keys = ["depends_on", "description", "optional"];
        assert_eq!(closest("depend_on", keys), Some("depends_on"));
        assert_eq!(closest("optinal", keys), Some("optional"));
        assert_eq!(closest("zzz", keys), None);
    }
}
