//! Skipping records without decoding them: a record's payload is MessagePack, where every
//! string — a container id, a namespace, an event's variant name — is stored as its plain UTF-8
//! bytes. So a record about container `web` holds the bytes `web`, and a record that does not
//! hold them is not about it. [`RawFilter`] looks for such byte strings in the raw payload
//! (SIMD substring search) and only the records it keeps are decoded; the decoded events are
//! then filtered exactly, so a false positive costs a decode and never a wrong answer.

use memchr::memmem::Finder;

/// Byte strings a payload must hold for its record to be worth decoding.
#[derive(Clone, Debug, Default)]
pub struct RawFilter {
    /// Every one of these must occur.
    all_of: Vec<Finder<'static>>,
    /// At least one of these must occur (ignored when empty).
    any_of: Vec<Finder<'static>>,
}

impl RawFilter {
    /// Keeps every record.
    pub fn everything() -> RawFilter {
        RawFilter::default()
    }

    /// Also require `needle` (an empty needle requires nothing).
    pub fn require(mut self, needle: &str) -> RawFilter {
        if !needle.is_empty() {
            self.all_of.push(Finder::new(needle.as_bytes()).into_owned());
        }
        self
    }

    /// Also require one of `needles` (an empty needle among them lets every record through).
    pub fn require_one_of(mut self, needles: &[&str]) -> RawFilter {
        if needles.iter().any(|needle| needle.is_empty()) {
            return self;
        }
        self.any_of.extend(needles.iter().map(|needle| Finder::new(needle.as_bytes()).into_owned()));
        self
    }

    /// False only when the payload cannot hold what the filter looks for.
    pub fn may_match(&self, payload: &[u8]) -> bool {
        self.all_of.iter().all(|finder| finder.find(payload).is_some())
            && (self.any_of.is_empty() || self.any_of.iter().any(|finder| finder.find(payload).is_some()))
    }
}

#[cfg(test)]
mod tests {
    use berth_projections::{Envelope, Event, Origin};

    use super::*;

    #[test]
    fn a_record_about_a_container_holds_its_id_and_event_names_in_plain_bytes() {
        let origin = Origin::Client { uid: 0, gid: 0, pid: 1, method: "m".into(), request_id: "r".into() };
        let started =
            Envelope::new("team-a", origin.clone(), vec![Event::TaskStarted { container_id: "web-1".into(), pid: 7 }]);
        let namespace = Envelope::new(
            "",
            origin,
            vec![Event::NamespaceCreated { name: "team-b".into(), labels: Default::default() }],
        );
        let about_web = RawFilter::everything().require("web-1");
        assert!(about_web.may_match(&started.encode()));
        assert!(!about_web.may_match(&namespace.encode()));
        let history = RawFilter::everything().require_one_of(&["web-1", "NamespaceCreated", "NamespaceRemoved"]);
        assert!(history.may_match(&started.encode()));
        assert!(history.may_match(&namespace.encode()));
        assert!(!RawFilter::everything().require("web-1").require("team-b").may_match(&started.encode()));
        assert!(RawFilter::everything().require("").require_one_of(&["", "x"]).may_match(b""));
    }
}
