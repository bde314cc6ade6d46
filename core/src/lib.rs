//! crhook-core
