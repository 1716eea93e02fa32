//! CreateNamespace and RemoveNamespace.

use std::collections::BTreeMap;

use berth_projections::{Event, State};

use crate::{validate, CommandError};

pub struct CreateNamespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl CreateNamespace {
    pub fn decide(&self, state: &State) -> Result<Vec<Event>, CommandError> {
        validate::namespace_name(&self.name)?;
        if state.namespace(&self.name).is_some() {
            return Err(CommandError::AlreadyExists(format!("namespace {:?} already exists", self.name)));
        }
        Ok(vec![Event::NamespaceCreated { name: self.name.clone(), labels: self.labels.clone() }])
    }
}

pub struct RemoveNamespace {
    pub name: String,
}

impl RemoveNamespace {
    pub fn decide(&self, state: &State) -> Result<Vec<Event>, CommandError> {
        let Some(namespace) = state.namespace(&self.name) else {
            return Err(CommandError::NotFound(format!(
                "namespace {:?} not found: `berth namespace ls` lists them",
                self.name
            )));
        };
        if !namespace.containers.is_empty() || !namespace.images.is_empty() || !namespace.volumes.is_empty() {
            return Err(CommandError::FailedPrecondition(format!(
                "namespace {:?} still holds {} container(s), {} image(s) and {} volume(s): remove them first",
                self.name,
                namespace.containers.len(),
                namespace.images.len(),
                namespace.volumes.len()
            )));
        }
        Ok(vec![Event::NamespaceRemoved { name: self.name.clone() }])
    }
}

/// Commands that put something into a namespace create it on first use, as containerd does.
pub(crate) fn ensure_namespace(state: &State, namespace: &str, events: &mut Vec<Event>) -> Result<(), CommandError> {
    validate::namespace_name(namespace)?;
    if state.namespace(namespace).is_none() {
        events.push(Event::NamespaceCreated { name: namespace.to_string(), labels: BTreeMap::new() });
    }
    Ok(())
}
