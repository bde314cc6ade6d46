//! crhook-tests: harness
