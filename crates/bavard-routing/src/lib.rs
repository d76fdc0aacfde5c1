//! The sans-IO Kademlia core: 256-bit keys, XOR distance, k-buckets and the iterative lookup.
