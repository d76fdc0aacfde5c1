//! Record storage for bavard: value and provider records behind a fallible trait.
