//! SWIM membership with Lifeguard (work in progress).
