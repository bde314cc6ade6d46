//! crhook-netstate
