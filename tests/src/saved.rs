//! The first half of every round trip: build the full fixture, record its state the
//! independent way, checkpoint it with the crhook binary, delete it.
//!
//! crhook runs inside the fixture's test host (see [`crate::crhook_cmd`]), so that is the
//! namespace where it finds, and on restore puts back, the uplink's outer end.

use crate::fixture::{Full, SIB_PEER, UPLINK_PEER};
use crate::{crhook, wait_link_gone, NsState, Run, TempDir, TestNs};

/// A checkpointed and deleted full fixture: its surviving neighbours, the images and what
/// the namespaces looked like.
#[derive(Debug)]
pub struct Saved {
    pub host: TestNs,
    pub sib: TestNs,
    pub dir: TempDir,
    /// state of the checkpointed namespace, as written to `a-state.json` before it was
    /// deleted and read back from there
    pub a_state: NsState,
    /// host and sib before the deletion (with the outer veth ends)
    pub host_state: NsState,
    pub sib_state: NsState,
    /// `crhook diff` on the namespace right after the checkpoint, before the deletion
    pub checkpoint_diff: Run,
}

impl Saved {
    /// Builds [`Full`] under `tag`, waits for it to settle, records it, checkpoints it and
    /// deletes it (waiting until its veth peers in host and sib are gone).
    pub fn checkpoint_full(tag: &str) -> Saved {
        let full = Full::build(tag);
        let a_state = NsState::capture(&full.a);
        let host_state = NsState::capture(&full.host);
        let sib_state = NsState::capture(&full.sib);
        let dir = TempDir::new(tag);
        let json = dir.path().join("a-state.json");
        std::fs::write(&json, a_state.to_json())
            .unwrap_or_else(|e| panic!("write {}: {e}", json.display()));
        let images = dir.join("images");
        let a_path = full.a.path_str();
        crhook(
            Some(&full.host),
            &["checkpoint", "--netns", &a_path, "--images", &images],
            &[],
        )
        .expect_success();
        let checkpoint_diff = crhook(
            Some(&full.host),
            &["diff", "--netns", &a_path, "--images", &images],
            &[],
        );
        let Full { a, host, sib } = full;
        a.delete();
        wait_link_gone(&host, UPLINK_PEER);
        wait_link_gone(&sib, SIB_PEER);
        let text = std::fs::read_to_string(&json)
            .unwrap_or_else(|e| panic!("read {}: {e}", json.display()));
        Saved {
            host,
            sib,
            dir,
            a_state: NsState::from_json(&text),
            host_state,
            sib_state,
            checkpoint_diff,
        }
    }

    /// The image directory.
    pub fn images(&self) -> String {
        self.dir.join("images")
    }

    /// `crhook restore --netns TARGET --images DIR EXTRA...`, run in the test host.
    pub fn restore(&self, target: &TestNs, extra: &[&str], env: &[(&str, &str)]) -> Run {
        let t = target.path_str();
        let images = self.images();
        let mut args = vec!["restore", "--netns", &t, "--images", &images];
        args.extend_from_slice(extra);
        crhook(Some(&self.host), &args, env)
    }

    /// `crhook diff --netns TARGET --images DIR`, run in the test host.
    pub fn diff(&self, target: &TestNs) -> Run {
        let t = target.path_str();
        let images = self.images();
        crhook(
            Some(&self.host),
            &["diff", "--netns", &t, "--images", &images],
            &[],
        )
    }
}
