//! What the readers hand to the rules, whichever path read it (pg::paths): the facts of some
//! tasks' steps in (task_id, workflow_step_id) order with their parent tallies and names, the
//! tasks' own rows, a task's graph. Plain Rust: no PostgreSQL type here.

use std::borrow::Cow;

use crate::rules::readiness::{ParentTally, StepFacts};
use crate::rules::state;

/// The steps of some tasks (inner-joined to their named steps) in (task_id, workflow_step_id)
/// order, each with its parent tally and named step's name; and, when the reader had them
/// along, the tasks' own rows.
#[derive(Default)]
pub struct Steps {
    pub facts: Vec<StepFacts>,
    pub tallies: Vec<ParentTally>,
    pub names: Bytes,
    pub tasks: Option<Vec<TaskRow>>,
}

impl Steps {
    /// Empties it, keeping the buffers.
    pub fn clear(&mut self) {
        self.facts.clear();
        self.tallies.clear();
        self.names.clear();
        self.tasks = None;
    }

    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }
}

/// A task's own row with its most_recent task state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub task_id: i64,
    pub named_task_id: i32,
    /// The most_recent task state (None: no transition).
    pub state: Option<Cow<'static, str>>,
}

/// A task's step ids and the `(from, to)` edges into them.
pub type TaskGraph = (Vec<i64>, Vec<(i64, i64)>);

/// Byte strings kept end to end in one buffer (one allocation instead of one per step).
#[derive(Default)]
pub struct Bytes {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Bytes {
    pub fn push(&mut self, s: &[u8]) {
        self.buf.extend_from_slice(s);
        self.ends.push(self.buf.len());
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The total length of the strings.
    pub fn total(&self) -> usize {
        self.buf.len()
    }
}

/// A state read as bytes, as the rules take it: borrowed for Tasker's states; anything else
/// is kept as text (bytes that are not UTF-8 are shown with U+FFFD, docs/compatibility.md).
pub fn state_of(bytes: &[u8]) -> Cow<'static, str> {
    // Tasker's own states first, compared as bytes (the common case, once per row read).
    if let Some(s) = state::ALL.iter().copied().find(|s| s.as_bytes() == bytes) {
        return Cow::Borrowed(s);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => state::name_of(s),
        Err(_) => Cow::Owned(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// Whether a parent in this state (as bytes) is done.
pub fn is_done(bytes: &[u8]) -> bool {
    bytes == state::COMPLETE.as_bytes() || bytes == state::RESOLVED_MANUALLY.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_keep_each_string() {
        let mut b = Bytes::default();
        b.push(b"a");
        b.push(b"");
        b.push("ü".as_bytes());
        assert_eq!((b.get(0), b.get(1), b.get(2), b.len(), b.total()), (&b"a"[..], &b""[..], "ü".as_bytes(), 3, 3));
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn states_are_borrowed_when_known() {
        assert!(matches!(state_of(b"complete"), Cow::Borrowed("complete")));
        assert_eq!(state_of(b"bogus"), "bogus");
        assert_eq!(state_of(&[0xe9]), "\u{fffd}");
        assert!(is_done(b"resolved_manually") && is_done(b"complete") && !is_done(b"Complete"));
    }
}
