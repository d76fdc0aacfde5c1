//! A deterministic discrete-event simulator that drives bavard's sans-IO cores at scale.
