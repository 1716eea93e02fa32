//! How an event is shown to scripts and which events a reader asked for — one definition for
//! both tools: `berth events` (berthd filters with [`EventSelector`] and the CLI prints with
//! [`event_json`]) and `berth-replay events` (both, on the log read offline), so the same record
//! prints as the same JSON object in either.

use berth_log::{Seq, Timestamp};
use serde::de::{Error as _, Visitor};
use serde_json::{json, Value};

use crate::event::{Event, Origin};

/// The origin as a flat JSON object with a `kind` of "client" (`uid`, `gid`, `pid`, `method`,
/// `request_id`) or "daemon" (`reason`, `answers`: the seq of the intent answered, or null).
pub fn origin_json(origin: &Origin) -> Value {
    match origin {
        Origin::Client { uid, gid, pid, method, request_id } => json!({
            "kind": "client", "uid": uid, "gid": gid, "pid": pid, "method": method, "request_id": request_id,
        }),
        Origin::Daemon { reason, answers } => json!({ "kind": "daemon", "reason": reason, "answers": answers }),
    }
}

/// Where an event sits and who caused its record: everything [`event_json`] shows but the event.
#[derive(Clone, Copy, Debug)]
pub struct EventPlace<'a> {
    pub seq: Seq,
    /// The event's position inside its record.
    pub index: usize,
    pub timestamp: Timestamp,
    pub namespace: &'a str,
    pub origin: Option<&'a Origin>,
}

/// One event as a JSON object: `seq`, `index`, `timestamp_ns`, `time` (RFC 3339 UTC),
/// `namespace` ("" for host-wide records), `origin` ([`origin_json`]), `kind` (e.g.
/// "TaskExited") and `fields` (the event's own fields, as `Event::fields_json`).
pub fn event_json(place: EventPlace<'_>, kind: &str, fields: Value) -> Value {
    json!({
        "seq": place.seq,
        "index": place.index,
        "timestamp_ns": place.timestamp.as_ns(),
        "time": place.timestamp.to_string(),
        "namespace": place.namespace,
        "origin": place.origin.map_or(Value::Null, origin_json),
        "kind": kind,
        "fields": fields,
    })
}

/// The events a reader asked for: of these kinds (any, when empty) and about this container
/// (any, when none). Namespaces and seq ranges are each tool's own business.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventSelector {
    kinds: Vec<&'static str>,
    container_id: Option<String>,
}

impl EventSelector {
    /// Kinds are matched case-insensitively and must name a kind berth records; an unknown one
    /// is refused with the list, since a typo would otherwise select nothing, silently.
    pub fn new(kinds: &[String], container_id: Option<String>) -> Result<EventSelector, String> {
        let kinds = kinds.iter().map(|asked| parse_event_kind(asked)).collect::<Result<Vec<_>, _>>()?;
        Ok(EventSelector { kinds, container_id: container_id.filter(|id| !id.is_empty()) })
    }

    /// The one container asked for, if any.
    pub fn container_id(&self) -> Option<&str> {
        self.container_id.as_deref()
    }

    pub fn keeps(&self, event: &Event) -> bool {
        if let Some(container_id) = &self.container_id {
            let about_container = match event {
                Event::OrphanRemoved { id, .. } => id == container_id,
                other => other.container_id() == Some(container_id.as_str()),
            };
            if !about_container {
                return false;
            }
        }
        self.kinds.is_empty() || self.kinds.contains(&event.kind())
    }
}

/// A kind as a person typed it (any case) in its own spelling, or an error that lists the kinds.
pub fn parse_event_kind(asked: &str) -> Result<&'static str, String> {
    let known = event_kinds();
    known.iter().copied().find(|kind| kind.eq_ignore_ascii_case(asked)).ok_or_else(|| {
        let shown: String = asked.chars().take(64).collect();
        format!("unknown event kind {shown:?}: use one of {}", known.join(", "))
    })
}

/// Every kind of event berth records, in the enum's order (its serde variant names, which are
/// what `Event::kind` returns), so a list of kinds needs no upkeep when a variant is added.
pub fn event_kinds() -> &'static [&'static str] {
    static KINDS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    KINDS.get_or_init(|| {
        let mut names = VariantNames(&[]);
        // Deserializing stops at `deserialize_enum`, which is handed the variant names.
        let _ = <Event as serde::Deserialize>::deserialize(&mut names);
        names.0
    })
}

/// A deserializer that only records the variant names an enum's `Deserialize` hands it.
struct VariantNames(&'static [&'static str]);

impl<'de> serde::Deserializer<'de> for &mut VariantNames {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(Self::Error::custom("only an enum's variant names are read"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = variants;
        Err(Self::Error::custom("variant names read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_list_is_the_enums_and_matches_what_events_call_themselves() {
        let kinds = event_kinds();
        assert_eq!(kinds.first(), Some(&"NamespaceCreated"));
        let started = Event::TaskStarted { container_id: "web".into(), pid: 7 };
        assert!(kinds.contains(&started.kind()));
        assert!(kinds.contains(&"OrphanRemoved") && kinds.contains(&"TaskExited"));
    }

    #[test]
    fn selectors_match_kinds_case_insensitively_and_refuse_unknown_ones() {
        let started = Event::TaskStarted { container_id: "web".into(), pid: 7 };
        let other = Event::TaskStarted { container_id: "db".into(), pid: 8 };
        let everything = EventSelector::new(&[], None).unwrap();
        assert!(everything.keeps(&started));
        let selector = EventSelector::new(&["taskstarted".to_string()], Some("web".into())).unwrap();
        assert!(selector.keeps(&started) && !selector.keeps(&other));
        let exits = EventSelector::new(&["TaskExited".to_string()], None).unwrap();
        assert!(!exits.keeps(&started));
        let error = EventSelector::new(&["TaskExitted".to_string()], None).unwrap_err();
        assert!(error.starts_with("unknown event kind \"TaskExitted\": use one of NamespaceCreated, "), "{error}");
        assert!(EventSelector::new(&["x".repeat(10_000)], None).unwrap_err().len() < 2048);
    }
}
