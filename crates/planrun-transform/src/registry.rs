//! The name -> transform registry that the `planrun` binary fills and plans look up.

use std::collections::BTreeMap;
use std::sync::Arc;

use planrun_plan::TransformCatalog;

use crate::batch::{batch_settings, transform_params};
use crate::transform::Transform;

#[derive(Default, Clone)]
pub struct Registry {
    transforms: BTreeMap<&'static str, Arc<dyn Transform>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds `transform`; a second registration under the same name replaces the first.
    pub fn register(&mut self, transform: impl Transform + 'static) -> &mut Registry {
        self.transforms
            .insert(transform.name(), Arc::new(transform));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Transform>> {
        self.transforms.get(name)
    }

    /// Every transform, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Transform>> {
        self.transforms.values()
    }
}

impl TransformCatalog for Registry {
    fn names(&self) -> Vec<String> {
        self.transforms
            .keys()
            .map(|name| (*name).to_owned())
            .collect()
    }

    fn check_params(&self, name: &str, params: &toml::Table) -> Vec<(String, String)> {
        let Some(transform) = self.get(name) else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        match batch_settings(params) {
            Ok(Some(_)) if !transform.supports_batches() => problems.push((
                "mode".to_owned(),
                format!("transform `{name}` does not support mode = \"batched\""),
            )),
            Ok(_) => {}
            Err(message) => problems.push(("mode".to_owned(), message)),
        }
        problems.extend(transform.check_params(&transform_params(params)));
        problems
    }

    fn locks(&self, name: &str, params: &toml::Table) -> Vec<planrun_plan::TableLock> {
        self.get(name)
            .map(|transform| transform.locks(&transform_params(params)))
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.transforms.keys()).finish()
    }
}
