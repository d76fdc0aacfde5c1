//! HyParView partial views and Plumtree broadcast (work in progress).
