//! Black-box tests across bavard's crates and processes live in `tests/`.
