//! Wire types for bavard's protocols and the length-prefixed framing they travel in.
