//! Which stages a run takes, in DAG order: all but the optional ones by default,
//! `--include-optional` adds those, `--stage` takes the named stages and what they
//! depend on, and `--until` stops after a stage. Each left out says why.

use std::collections::BTreeSet;

use crate::apply::run::Runner;
use crate::error::EngineError;
use crate::options::ApplyOptions;
use crate::prepared::PreparedStage;

impl<'a> Runner<'a> {
    /// The ids of the stages `options` select, in run order (whether or not they have
    /// run before).
    pub fn selected_stages(&self, options: &ApplyOptions) -> Result<Vec<&str>, EngineError> {
        Ok(self
            .selection(options)?
            .into_iter()
            .filter(|(_, selected, _)| *selected)
            .map(|(stage, _, _)| stage.id())
            .collect())
    }

    /// Stage indexes in order, each with whether it is selected.
    pub(crate) fn selection(
        &self,
        options: &ApplyOptions,
    ) -> Result<Selection<'_, 'a>, EngineError> {
        let mut named: BTreeSet<usize> = BTreeSet::new();
        for id in options.stages.iter().chain(&options.until) {
            if self.plan().stage_position(id).is_none() {
                let ids: Vec<&str> = self.plan().stages.iter().map(|s| s.id.as_str()).collect();
                return Err(EngineError::Selection(format!(
                    "no stage `{id}` in plan {}; stages: {}",
                    self.plan().name,
                    ids.join(", ")
                )));
            }
        }
        for id in &options.stages {
            let index = self.plan().stage_position(id).expect("checked above");
            named.insert(index);
            named.extend(self.dag().ancestors(index));
        }
        let until_position = options.until.as_ref().map(|id| {
            let index = self.plan().stage_position(id).expect("checked above");
            self.dag()
                .order()
                .iter()
                .position(|&i| i == index)
                .expect("every stage is ordered")
        });
        Ok(self
            .dag()
            .order()
            .iter()
            .enumerate()
            .map(|(position, &index)| {
                let (selected, why) = if until_position.is_some_and(|until| position > until) {
                    (
                        false,
                        Some(format!(
                            "after --until {}",
                            options.until.as_deref().unwrap_or("")
                        )),
                    )
                } else if !options.stages.is_empty() {
                    if named.contains(&index) {
                        (true, None)
                    } else {
                        (false, Some("not named by --stage".into()))
                    }
                } else if self.plan().stages[index].optional && !options.include_optional {
                    (
                        false,
                        Some("optional: run with --include-optional or --stage".into()),
                    )
                } else {
                    (true, None)
                };
                (&self.prepared().stages[index], selected, why)
            })
            .collect())
    }
}

/// Every stage in run order, each with whether the options select it and, if not,
/// why.
pub(crate) type Selection<'p, 'a> = Vec<(&'p PreparedStage<'a>, bool, Option<String>)>;

/// Whether `selection` takes `stage`.
pub(crate) fn is_selected(
    selection: &[(&PreparedStage<'_>, bool, Option<String>)],
    stage: &PreparedStage<'_>,
) -> bool {
    selection
        .iter()
        .any(|(chosen, selected, _)| chosen.position == stage.position && *selected)
}
